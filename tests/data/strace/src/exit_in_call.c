/* A thread blocked in read when the process exits: strace prints "<... read resumed> <unfinished ...>) = ?". */
#include <pthread.h>
#include <unistd.h>
#include <stdlib.h>
static void *blocker(void *a) { char c; (void)a; read(0, &c, 1); return NULL; }
int main(void) {
    pthread_t t; pthread_create(&t, NULL, blocker, NULL);
    usleep(50000);
    exit(0);   /* exit_group while the thread is blocked in read */
}
