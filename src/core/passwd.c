/* passwd.c — `kasi passwd FILE USER`: reads a password (from the terminal
 * without echo, asked twice; else the first line of stdin), hashes it with
 * yescrypt and writes "USER:HASH" into FILE, replacing USER's old line. The
 * file is rewritten through a temporary file and rename(), so a reader
 * (the auth/flat_file plugin) sees the old or the new file, never half. */
#include "core/passwd.h"

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#define PASSWD_MAX 1024         /* longest password accepted */

int passwd_user_ok(const char *user)
{
    size_t n = strlen(user);
    if (n == 0 || n > 255)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)user[i];
        if (c <= 0x20 || c == 0x7f || c == ':')
            return 0;
    }
    return 1;
}

/* One line from f into buf (without the line end). -1: none, too long,
 * or a NUL in it. */
static int passwd_read_line(FILE *f, char *buf, size_t len)
{
    if (!fgets(buf, (int)len, f))
        return -1;
    size_t n = strlen(buf);
    int complete = n && buf[n - 1] == '\n';
    if (!complete && !feof(f))
        return -1;              /* longer than the buffer */
    if (complete)
        buf[--n] = '\0';
    if (n && buf[n - 1] == '\r')
        buf[--n] = '\0';
    return 0;
}

/* Prompt on the terminal with echo off. */
static int passwd_prompt(const char *prompt, char *buf, size_t len)
{
    struct termios old, quiet;
    if (tcgetattr(STDIN_FILENO, &old) < 0)
        return -1;
    quiet = old;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
    fputs(prompt, stderr);
    fflush(stderr);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
    int rc = passwd_read_line(stdin, buf, len);
    tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
    fputc('\n', stderr);
    return rc;
}

static int passwd_get(char *pw, size_t len)
{
    if (!isatty(STDIN_FILENO))
        return passwd_read_line(stdin, pw, len);
    char again[PASSWD_MAX + 2];
    int rc = -1;
    if (passwd_prompt("Password: ", pw, len) == 0 &&
        passwd_prompt("Again: ", again, sizeof again) == 0) {
        rc = strcmp(pw, again) == 0 ? 0 : -2;
    }
    explicit_bzero(again, sizeof again);
    return rc;
}

/* A yescrypt hash of pw, malloc'd; NULL on failure. */
static char *passwd_hash(const char *pw)
{
    char *setting = crypt_gensalt_ra("$y$", 0, NULL, 0);
    struct crypt_data *cd = calloc(1, sizeof *cd);
    char *out = NULL;
    if (setting && cd) {
        const char *h = crypt_r(pw, setting, cd);
        if (h && h[0] == '$')
            out = strdup(h);
        explicit_bzero(cd, sizeof *cd);
    }
    free(cd);
    free(setting);
    return out;
}

/* Copy the lines of old (may be NULL) to out, without those of user. */
static int passwd_copy_others(FILE *old, FILE *out, const char *user)
{
    char *line = NULL;
    size_t cap = 0, ulen = strlen(user);
    ssize_t n;
    while (old && (n = getline(&line, &cap, old)) > 0) {
        if (!strncmp(line, user, ulen) && line[ulen] == ':')
            continue;
        fputs(line, out);
        if (line[n - 1] != '\n')
            fputc('\n', out);
    }
    free(line);
    return old && ferror(old) ? -1 : 0;
}

static int passwd_fail(char *err, size_t errlen, const char *what, const char *path)
{
    snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
    return -1;
}

/* Write the new file into fd (a temporary next to path). */
static int passwd_write(int fd, const char *path, const char *user, const char *hash,
                        char *err, size_t errlen)
{
    FILE *old = fopen(path, "r");
    if (!old && errno != ENOENT)
        return passwd_fail(err, errlen, "cannot read", path);
    struct stat st;
    mode_t mode = old && fstat(fileno(old), &st) == 0 ? st.st_mode & 07777 : 0600;
    FILE *out = fdopen(fd, "w");
    if (!out) {
        if (old)
            fclose(old);
        return passwd_fail(err, errlen, "cannot write", path);
    }
    int rc = passwd_copy_others(old, out, user);
    if (old)
        fclose(old);
    fprintf(out, "%s:%s\n", user, hash);
    if (rc < 0 || fchmod(fd, mode) < 0 || fflush(out) != 0 || fsync(fd) < 0)
        rc = -1;
    if (fclose(out) != 0)
        rc = -1;
    return rc < 0 ? passwd_fail(err, errlen, "cannot write", path) : 0;
}

int passwd_update(const char *path, const char *user, const char *hash,
                  char *err, size_t errlen)
{
    size_t n = strlen(path) + 16;
    char *tmp = malloc(n);
    if (!tmp) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    snprintf(tmp, n, "%s.tmpXXXXXX", path);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        passwd_fail(err, errlen, "cannot create a temporary file for", path);
        free(tmp);
        return -1;
    }
    int rc = passwd_write(fd, path, user, hash, err, errlen);
    if (rc == 0 && rename(tmp, path) < 0)
        rc = passwd_fail(err, errlen, "cannot replace", path);
    if (rc < 0)
        unlink(tmp);
    free(tmp);
    return rc;
}

static int passwd_usage(void)
{
    fputs("usage: kasi passwd FILE USER   (the password is read from the terminal\n"
          "                               or from the first line of stdin)\n", stderr);
    return 2;
}

int passwd_main(int argc, char **argv)
{
    char pw[PASSWD_MAX + 2], err[512];
    if (argc != 3)
        return passwd_usage();
    const char *path = argv[1], *user = argv[2];
    if (!passwd_user_ok(user)) {
        fprintf(stderr, "kasi passwd: bad user name (1-255 printable characters, "
                        "no ':' or blanks)\n");
        return 1;
    }
    int got = passwd_get(pw, sizeof pw);
    if (got < 0 || !pw[0] || strlen(pw) > PASSWD_MAX) {
        fprintf(stderr, "kasi passwd: %s; nothing written\n",
                got == -2 ? "the passwords differ"
                : got < 0 && !feof(stdin) ? "password too long or unreadable"
                : "empty password");
        explicit_bzero(pw, sizeof pw);
        return 1;
    }
    char *hash = passwd_hash(pw);
    explicit_bzero(pw, sizeof pw);
    if (!hash) {
        fprintf(stderr, "kasi passwd: cannot compute a yescrypt hash\n");
        return 1;
    }
    int rc = passwd_update(path, user, hash, err, sizeof err);
    free(hash);
    if (rc < 0) {
        fprintf(stderr, "kasi passwd: %s\n", err);
        return 1;
    }
    fprintf(stderr, "kasi passwd: password of %s set in %s\n", user, path);
    return 0;
}
