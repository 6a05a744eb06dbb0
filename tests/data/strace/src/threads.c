#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>
#include <signal.h>
#include <sys/wait.h>
static void *work(void *a) {
    for (int i = 0; i < 4; i++) {
        void *p = mmap(NULL, 65536, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0);
        madvise(p, 65536, 0x66);
        mprotect(p, 4096, PROT_NONE);
        munmap(p, 65536);
        usleep(100);
    }
    return NULL;
}
int main(void) {
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, work, NULL);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    mmap(NULL, 1<<21, PROT_READ, MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB|(21<<26), -1, 0);
    mmap((void*)0x10000000, 4096, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS|MAP_FIXED_NOREPLACE|0x200000, -1, 0);
    syscall(0x1ce, 1, 2);
    write(1, "tab\there \"q\" \\ nl\n\x01\xff", 20);
    pid_t c = fork();
    if (c == 0) { pause(); _exit(0); }
    usleep(10000);
    kill(c, SIGKILL);
    int st; waitpid(c, &st, 0);
    pid_t d = fork();
    if (d == 0) { *(volatile int *)0 = 1; }
    waitpid(d, &st, 0);
    return 3;
}
