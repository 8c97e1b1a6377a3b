/* init.c — `kasi init DIR`: creates a deployment that `kasi -c DIR/config`
 * serves as it is:
 *
 *   DIR/config/   a copy of the shipped default configuration (config/ in
 *                 the data directory, found as core/paths.h says)
 *   DIR/plugins/  site plugins: a file here adds a plugin or overrides a
 *                 shipped one of the same name
 *   DIR/README    what is where, and the next commands
 *
 * The spool, DIR/spool, is made by kasi when it starts (the default
 * smtp.yaml says spool_dir: ../spool). DIR must be missing or empty, so
 * init never overwrites a file. Called from main.c; errors are printed
 * here, once. */
#include "init.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fdio.h"
#include "core/paths.h"

static const char init_readme[] =
    "This directory is a kasi deployment, made by `kasi init`.\n"
    "\n"
    "  config/    configuration: smtp.yaml (listeners, limits, TLS, spool),\n"
    "             plugins (the plugins to run, in order), <plugin>.yaml\n"
    "  plugins/   your own plugins; a file here overrides a shipped plugin\n"
    "             of the same name (plugins/queue/spool.lua, ...)\n"
    "  spool/     accepted messages (<id>.eml and <id>.env), made at start\n"
    "\n"
    "Check the configuration, then run kasi in the foreground:\n"
    "\n"
    "  kasi -t -c config\n"
    "  kasi -c config\n"
    "\n"
    "It listens on 127.0.0.1:2525 until you change `listen:` in\n"
    "config/smtp.yaml. `kill -HUP` reloads plugins and their configuration.\n";

static int init_fail(const char *what, const char *path)
{
    fprintf(stderr, "kasi init: %s: %s\n", path, what ? what : strerror(errno));
    return -1;
}

static int init_join(char *out, size_t len, const char *dir, const char *name)
{
    int n = snprintf(out, len, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= len) {
        fprintf(stderr, "kasi init: %s/%s: path too long\n", dir, name);
        return -1;
    }
    return 0;
}

/* Create dir, or accept an existing empty directory. */
static int init_empty_dir(const char *dir)
{
    if (mkdir(dir, 0755) == 0)
        return 0;
    if (errno != EEXIST)
        return init_fail(NULL, dir);
    DIR *d = opendir(dir);
    if (!d)
        return init_fail(NULL, dir);
    struct dirent *e;
    int empty = 1;
    while (empty && (e = readdir(d)))
        empty = !strcmp(e->d_name, ".") || !strcmp(e->d_name, "..");
    closedir(d);
    return empty ? 0 : init_fail("not empty; refusing to write into it", dir);
}

/* Copy one regular file to a new file (never replacing one). */
static int init_copy_file(const char *src, const char *dst, mode_t mode)
{
    char buf[8192];
    ssize_t n = 0;
    int in = open(src, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        return init_fail(NULL, src);
    int out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 0777);
    if (out < 0) {
        close(in);
        return init_fail(NULL, dst);
    }
    while ((n = read(in, buf, sizeof buf)) > 0 && fdio_write_all(out, buf, (size_t)n) == 0)
        ;
    int rc = n == 0 ? 0 : init_fail(NULL, n < 0 ? src : dst);
    close(in);
    if (close(out) < 0 && rc == 0)
        rc = init_fail(NULL, dst);
    return rc;
}

static int init_copy_tree(const char *src, const char *dst);

static int init_copy_entry(const char *src, const char *dst, const char *name)
{
    char from[PATH_MAX], to[PATH_MAX];
    struct stat st;
    if (init_join(from, sizeof from, src, name) < 0 ||
        init_join(to, sizeof to, dst, name) < 0)
        return -1;
    if (lstat(from, &st) < 0)
        return init_fail(NULL, from);
    if (S_ISDIR(st.st_mode))
        return init_copy_tree(from, to);
    return S_ISREG(st.st_mode) ? init_copy_file(from, to, st.st_mode) : 0;
}

/* Copy the directory src to the new directory dst: directories and
 * regular files, nothing else. */
static int init_copy_tree(const char *src, const char *dst)
{
    if (mkdir(dst, 0755) < 0)
        return init_fail(NULL, dst);
    DIR *d = opendir(src);
    if (!d)
        return init_fail(NULL, src);
    struct dirent *e;
    int rc = 0;
    while (rc == 0 && (e = readdir(d)))
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
            rc = init_copy_entry(src, dst, e->d_name);
    closedir(d);
    return rc;
}

static int init_write_readme(const char *dir)
{
    char path[PATH_MAX];
    if (init_join(path, sizeof path, dir, "README") < 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0)
        return init_fail(NULL, path);
    int rc = fdio_write_all(fd, init_readme, sizeof init_readme - 1);
    if (close(fd) < 0 || rc < 0)
        return init_fail(NULL, path);
    return 0;
}

/* The shipped default configuration directory into out. */
static int init_find_defaults(char *out, size_t len)
{
    if (paths_find_shipped("config/smtp.yaml", out, len) < 0) {
        fprintf(stderr, "kasi init: the default configuration (config/smtp.yaml) "
                        "is not in the data directory; is kasi installed?\n");
        return -1;
    }
    *strrchr(out, '/') = '\0';
    return 0;
}

static int init_create(const char *dir)
{
    char defaults[PATH_MAX], path[PATH_MAX];
    if (init_find_defaults(defaults, sizeof defaults) < 0 || init_empty_dir(dir) < 0)
        return -1;
    if (init_join(path, sizeof path, dir, "config") < 0 ||
        init_copy_tree(defaults, path) < 0)
        return -1;
    if (init_join(path, sizeof path, dir, "plugins") < 0)
        return -1;
    if (mkdir(path, 0755) < 0)
        return init_fail(NULL, path);
    return init_write_readme(dir);
}

int init_main(int argc, char **argv)
{
    if (argc != 2 || !argv[1][0]) {
        fputs("usage: kasi init DIR   (create a deployment: DIR/config, "
              "DIR/plugins, DIR/README)\n", stderr);
        return 2;
    }
    const char *dir = argv[1];
    if (init_create(dir) < 0)
        return 1;
    printf("kasi: created %s (config/, plugins/, README)\n"
           "check it:  kasi -t -c %s/config\n"
           "run it:    kasi -c %s/config\n", dir, dir, dir);
    return 0;
}
