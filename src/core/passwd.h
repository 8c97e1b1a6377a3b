/* passwd.h — `kasi passwd FILE USER`: add a user to an auth/flat_file
 * password file, or change their password, with a yescrypt hash. */
#ifndef KASI_PASSWD_H
#define KASI_PASSWD_H

#include <stddef.h>

/* argv[0] is "passwd". Returns the process exit status. */
int passwd_main(int argc, char **argv);

/* A user name the file format can hold: 1..255 printable bytes other than
 * ':' and blanks. */
int passwd_user_ok(const char *user);

/* Replace USER's line in the file at path (or append it; create the file)
 * with "user:hash", atomically (temporary file + rename). 0, or -1 with
 * err. */
int passwd_update(const char *path, const char *user, const char *hash,
                  char *err, size_t errlen);

#endif
