/* Blocks in read(0) until killed: strace prints "read(0,  <unfinished ...>) = ?". */
#include <unistd.h>
int main(void) { char c; return (int)read(0, &c, 1); }
