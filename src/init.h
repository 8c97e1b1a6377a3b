/* init.h — `kasi init DIR`: create a new deployment directory. */
#ifndef KASI_INIT_H
#define KASI_INIT_H

/* argv[0] is "init". Returns the process exit status (0, 1 on failure,
 * 2 on a usage error). */
int init_main(int argc, char **argv);

#endif
