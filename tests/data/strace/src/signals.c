#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>
static void on_alarm(int s) { (void)s; }
static void *execer(void *a) {
    (void)a;
    usleep(20000);
    execl("/bin/true", "true", (char *)NULL);
    return NULL;
}
int main(int argc, char **argv) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_alarm;
    sigaction(SIGALRM, &sa, NULL);        /* no SA_RESTART: read gets EINTR */
    int p[2]; pipe(p);
    alarm(1);
    char c;
    read(p[0], &c, 1);                    /* = ? ERESTARTSYS, --- SIGALRM --- */
    pid_t k = fork();
    if (k == 0) { for (;;) pause(); }
    usleep(10000);
    kill(k, SIGSTOP);
    int st; waitpid(k, &st, WUNTRACED);
    kill(k, SIGCONT);
    kill(k, SIGTERM);
    waitpid(k, &st, 0);
    void *m = mmap(NULL, 1UL << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mremap(m, 1UL << 20, 2UL << 20, MREMAP_MAYMOVE);
    madvise(m, 4096, MADV_DONTNEED);
    pthread_t t; pthread_create(&t, NULL, execer, NULL);
    pause();
    return 0;
}
