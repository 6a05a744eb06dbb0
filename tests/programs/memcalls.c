/* memcalls: a program that makes the memory calls real programs rarely make, with valid and
 * invalid arguments, so that `vmkit record` + `vmkit replay` check them too.  Every call's result
 * is what the kernel returns; the program ignores failures on purpose (the trace records them). */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define PAGE 4096UL
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#define MADV_GUARD_REMOVE 103
#endif

static void *worker(void *arg) {
    char *p = mmap(NULL, 16 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p != MAP_FAILED) {
        memset(p, 1, 16 * PAGE);
        madvise(p, 8 * PAGE, MADV_DONTNEED);
        munmap(p, 16 * PAGE);
    }
    return arg;
}

int main(void) {
    unsigned char vec[64];
    /* mmap: hints, MAP_FIXED, NOREPLACE, errors */
    char *a = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mmap(a, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0); /* EEXIST */
    mmap(NULL, 0, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);                     /* EINVAL */
    mmap(NULL, PAGE, PROT_READ, MAP_ANONYMOUS, -1, 0);                                /* EINVAL */
    mmap((void *)0x200000000, 4 * PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0); /* hint */
    mmap(NULL, 2 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
    mmap(NULL, PAGE, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_32BIT, -1, 0);
    mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_GROWSDOWN, -1, 0);
    char *big = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    memset(a, 7, 8 * PAGE);
    /* mprotect: split, merge back, errors */
    mprotect(a + 2 * PAGE, 2 * PAGE, PROT_READ);
    mprotect(a + 2 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE);
    mprotect(a + 1, PAGE, PROT_READ);                    /* EINVAL */
    mprotect((void *)0x10000, PAGE, PROT_READ);          /* ENOMEM */
    /* mincore, madvise */
    mincore(a, 8 * PAGE, vec);
    mincore(a + 1, PAGE, vec);                           /* EINVAL */
    madvise(a, 8 * PAGE, MADV_DONTNEED);
    madvise(a, 8 * PAGE, MADV_FREE);
    madvise(a, 8 * PAGE, MADV_WILLNEED);
    madvise(a, 8 * PAGE, MADV_DONTFORK);
    madvise(a, 8 * PAGE, MADV_DOFORK);
    madvise(big, 4 << 20, MADV_HUGEPAGE);
    madvise(big, 4 << 20, MADV_NOHUGEPAGE);
    madvise(a, 8 * PAGE, MADV_REMOVE);                   /* EINVAL on private anonymous */
    madvise(a, 8 * PAGE, 12345);                         /* EINVAL */
    madvise(a, 8 * PAGE, MADV_GUARD_INSTALL);
    madvise(a, 8 * PAGE, MADV_GUARD_REMOVE);
    /* mremap: grow in place, move, shrink, DONTUNMAP, errors */
    char *m = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    m = mremap(m, 2 * PAGE, 4 * PAGE, 0);
    char *m2 = mremap(a, 8 * PAGE, 64 * PAGE, MREMAP_MAYMOVE);
    if (m2 != MAP_FAILED) a = m2;
    mremap(a, 64 * PAGE, 16 * PAGE, 0);
    char *d = mremap(a, 16 * PAGE, 16 * PAGE, MREMAP_MAYMOVE | MREMAP_DONTUNMAP);
    mremap(a, PAGE, PAGE, MREMAP_FIXED);                 /* EINVAL */
    mremap((void *)0x10000, PAGE, 2 * PAGE, 0);          /* EFAULT */
    /* mlock family */
    mlock(d, 4 * PAGE);
    mlock2(d + 4 * PAGE, 4 * PAGE, MLOCK_ONFAULT);
    munlock(d, 16 * PAGE);
    mlock((void *)0x10000, PAGE);                        /* ENOMEM */
    mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT);
    mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    munlockall();
    mlockall(0);                                         /* EINVAL */
    /* files: msync on a shared file mapping, memfd, /dev/zero */
    int fd = open("/tmp/vmkit-memcalls.dat", O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
        ftruncate(fd, 4 * PAGE);
        char *f = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (f != MAP_FAILED) {
            f[0] = 1;
            msync(f, 4 * PAGE, MS_SYNC);
            msync(f, 4 * PAGE, MS_ASYNC | MS_INVALIDATE);
            msync(f, 4 * PAGE, MS_SYNC | MS_ASYNC);      /* EINVAL */
            mincore(f, 4 * PAGE, vec);
            munmap(f, 4 * PAGE);
        }
        mmap(NULL, 2 << 20, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        unlink("/tmp/vmkit-memcalls.dat");
    }
    int ro = open("/etc/hostname", O_RDONLY);
    if (ro >= 0) {
        mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, ro, 0);   /* EACCES */
        mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, ro, 0);
        close(ro);
    }
    int mfd = memfd_create("vmkit", MFD_CLOEXEC);
    if (mfd >= 0) {
        ftruncate(mfd, 8 * PAGE);
        mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
        close(mfd);
    }
    int zero = open("/dev/zero", O_RDWR);
    if (zero >= 0) {
        mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, zero, 0);
        mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, zero, 0);
        close(zero);
    }
    mmap(NULL, PAGE, PROT_READ, MAP_SHARED, 99, 0);      /* EBADF */
    /* brk */
    void *cur = sbrk(0);
    brk((char *)cur + 64 * PAGE);
    brk((char *)cur + 16 * PAGE);
    brk((void *)0x1000);
    /* threads */
    pthread_t t[3];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, worker, NULL);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    /* fork: the child works on its copy; process_vm_readv/process_madvise from the parent */
    char *shared = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    int pipefd[2];
    pipe(pipefd);
    pid_t child = fork();
    if (child == 0) {
        char *c = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        memset(c, 3, 4 * PAGE);
        munmap(shared, PAGE);
        mprotect(c, PAGE, PROT_READ);
        write(pipefd[1], &c, sizeof c);
        for (;;) pause();  /* the parent kills us */
    }
    char *remote = NULL;
    read(pipefd[0], &remote, sizeof remote);
    char buf[256];
    struct iovec local = {buf, sizeof buf}, rem = {remote, sizeof buf};
    process_vm_readv(child, &local, 1, &rem, 1, 0);
    struct iovec bad = {(void *)0x10000, 16};
    process_vm_readv(child, &local, 1, &bad, 1, 0);      /* EFAULT */
    process_vm_writev(child, &local, 1, &rem, 1, 0);
    int pidfd = syscall(SYS_pidfd_open, child, 0);
    if (pidfd >= 0) {
        struct iovec adv = {remote, 4 * PAGE};
        syscall(SYS_process_madvise, pidfd, &adv, 1, MADV_COLD, 0);
        syscall(SYS_process_madvise, pidfd, &adv, 1, MADV_DONTNEED, 0);  /* EINVAL */
    }
    kill(child, 9);
    waitpid(child, NULL, 0);
    munmap(big, 4 << 20);
    munmap(a, 0);                                        /* EINVAL */
    return 0;
}
