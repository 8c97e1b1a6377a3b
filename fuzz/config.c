/* config.c — fuzz target for the configuration loader (src/core/config.h
 * over src/core/yaml_tree.h).
 *
 * Input: the bytes of smtp.yaml; what follows a line "#me" (a YAML
 * comment) is written as the `me` file. Both go into one scratch directory
 * that config_load reads. Checked: a failure
 * leaves a message that names the file (or is "out of memory") and a
 * config that config_free takes; a success has at least one listener with
 * a numeric port, a valid host name and every number inside the range the
 * schema table gives. Every line of the input is also tried as a --listen
 * address. */
#include "fuzz.h"
#include "core/config.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void write_file(const char *name, const uint8_t *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    FUZZ_CHECK(fd >= 0);
    FUZZ_CHECK(write(fd, p, n) == (ssize_t)n);
    close(fd);
}

static void remove_file(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    unlink(path);
}

static void cleanup(void)
{
    remove_file("me");
    remove_file("smtp.yaml");
    rmdir(dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(dir, sizeof dir, "%s/kasi-fuzz-config-XXXXXX", base);
    FUZZ_CHECK(mkdtemp(dir) != NULL);
    atexit(cleanup);
    return 0;
}

static void check_ok(const struct kasi_config *c)
{
    FUZZ_CHECK(c->nlisten >= 1 && c->listen);
    for (size_t i = 0; i < c->nlisten; i++) {
        const struct listen_cfg *l = &c->listen[i];
        FUZZ_CHECK(l->host && l->host[0] && l->port);
        FUZZ_CHECK(strspn(l->port, "0123456789") == strlen(l->port));
        FUZZ_CHECK(atoi(l->port) <= 65535);
        FUZZ_CHECK(l->tls != LISTEN_TLS_DEFAULT && (l->auth == 0 || l->auth == 1));
        FUZZ_CHECK(l->tls == LISTEN_TLS_NONE || c->tls.ncerts > 0);
    }
    FUZZ_CHECK(c->hostname && c->hostname[0] && !strpbrk(c->hostname, " \t\r\n"));
    FUZZ_CHECK(c->dir && c->spool_dir && c->log_target);
    FUZZ_CHECK(c->max_connections >= 1 && c->max_connections <= 1000000);
    FUZZ_CHECK(c->max_recipients >= 1 && c->max_errors >= 1);
    FUZZ_CHECK(c->max_line_length >= 78 && c->max_line_length <= 100000);
    FUZZ_CHECK(c->max_command_length >= 512 && c->max_command_length <= 65536);
    FUZZ_CHECK(c->memory_buffer >= 1);
    FUZZ_CHECK(c->timeout_command > 0 && c->timeout_data_block > 0 &&
               c->timeout_shutdown > 0 && c->auth_failure_window > 0);
    FUZZ_CHECK(c->log_level >= 0 && c->log_level <= 3);
    for (size_t i = 0; i < c->tls.ncerts; i++)
        FUZZ_CHECK(c->tls.certs[i].cert && c->tls.certs[i].key);
}

static void try_listen_lines(const uint8_t *data, size_t size)
{
    for (size_t start = 0, i = 0; i <= size; i++) {
        if (i < size && data[i] != '\n')
            continue;
        char *s = strndup((const char *)data + start, i - start);
        FUZZ_CHECK(s != NULL);
        char *host, *port, err[256];
        if (config_parse_listen(s, &host, &port, err, sizeof err) == 0) {
            FUZZ_CHECK(host && port && atoi(port) <= 65535);
            free(host);
            free(port);
        } else {
            FUZZ_CHECK(!host && !port && err[0]);
        }
        free(s);
        start = i + 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char mark[] = "\n#me\n";
    size_t yaml_len = size;
    const uint8_t *me = memmem(data, size, mark, sizeof mark - 1);
    if (me) {
        yaml_len = (size_t)(me - data) + 1;
        me += sizeof mark - 1;
        write_file("me", me, size - (size_t)(me - data));
    } else {
        remove_file("me");
    }
    write_file("smtp.yaml", data, yaml_len);

    struct kasi_config cfg;
    char err[1024];
    int rc = config_load(dir, &cfg, err, sizeof err);
    if (rc == 0)
        check_ok(&cfg);
    else
        FUZZ_CHECK(strncmp(err, dir, strlen(dir)) == 0 ||
                   strcmp(err, "out of memory") == 0);
    config_free(&cfg);
    try_listen_lines(data, size);
    return 0;
}
