/* config.c — kasi's core configuration. Reads DIR/smtp.yaml through the YAML
 * tree loader and DIR/me, starts from the defaults documented in config.h
 * and checks every key against its schema table (the mechanism is in
 * config_table.c): an unknown key, a wrong type or an out-of-range value
 * is an error naming file, line and dotted key. */
#include "core/config.h"
#include "core/config_table.h"
#include "core/yaml_tree.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <grp.h>
#include <pwd.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CFG_KIB 1024ULL
#define CFG_GIB (CFG_KIB * CFG_KIB * CFG_KIB)
#define CFG_MAX_MSG ((unsigned long long)SIZE_MAX > (1ULL << 40) ? \
                     (1ULL << 40) : (unsigned long long)SIZE_MAX)
#define CFG_MAX_SECONDS 86400ULL
#define CFG_HOST_MAX 253

/* ---- small parsers ----------------------------------------------------- */

static char *cfg_join(const char *dir, const char *name)
{
    size_t dl = strlen(dir);
    int slash = dl > 0 && dir[dl - 1] == '/';
    char *p = malloc(dl + strlen(name) + 2);
    if (p)
        sprintf(p, "%s%s%s", dir, slash ? "" : "/", name);
    return p;
}

static int cfg_host_char(int ch, int bracketed)
{
    if (isalnum(ch) || ch == '.' || ch == '-' || ch == '_')
        return 1;
    return bracketed && (ch == ':' || ch == '%');
}

/* A host name for the greeting: letters, digits, . - _ or an address literal
 * in brackets. Never spaces or control characters. */
static int cfg_hostname_ok(const char *s)
{
    size_t len = strlen(s);
    if (len == 0 || len > CFG_HOST_MAX)
        return 0;
    int br = s[0] == '[';
    if (br && (len < 3 || s[len - 1] != ']'))
        return 0;
    for (size_t i = br; i < len - (size_t)br; i++)
        if (!cfg_host_char((unsigned char)s[i], br))
            return 0;
    return 1;
}

static int cfg_replace(char **slot, const char *value)
{
    char *copy = strdup(value);
    if (!copy)
        return -1;
    free(*slot);
    *slot = copy;
    return 0;
}

/* ---- listen addresses -------------------------------------------------- */

static int cfg_msg(char *err, size_t errlen, const char *fmt, const char *s)
{
    if (err && errlen)
        snprintf(err, errlen, fmt, s);
    return -1;
}

/* Split s into host [he..) and port text; brackets only around IPv6. */
static int cfg_split_listen(const char *s, const char **h, const char **he,
                            const char **p, char *err, size_t errlen)
{
    if (s[0] == '[') {
        *h = s + 1;
        *he = strchr(*h, ']');
        if (!*he)
            return cfg_msg(err, errlen, "missing ']' in '%s'", s);
        if ((*he)[1] != ':')
            return cfg_msg(err, errlen, "expected ':PORT' after ']' in '%s'", s);
        if (!memchr(*h, ':', (size_t)(*he - *h)))
            return cfg_msg(err, errlen, "brackets are only for IPv6 addresses: '%s'", s);
        *p = *he + 2;
        return 0;
    }
    const char *colon = strrchr(s, ':');
    if (!colon)
        return cfg_msg(err, errlen, "missing ':PORT' in '%s'", s);
    if (memchr(s, ':', (size_t)(colon - s)))
        return cfg_msg(err, errlen,
                       "an IPv6 address needs brackets, as in '[::1]:2525': '%s'", s);
    *h = s;
    *he = colon;
    *p = colon + 1;
    return 0;
}

int config_parse_listen(const char *s, char **host, char **port, char *err, size_t errlen)
{
    const char *h, *he, *p;
    *host = *port = NULL;
    if (cfg_split_listen(s, &h, &he, &p, err, errlen) < 0)
        return -1;
    if (he == h)
        return cfg_msg(err, errlen, "missing host in '%s'", s);
    for (const char *q = h; q < he; q++)
        if (!cfg_host_char((unsigned char)*q, s[0] == '['))
            return cfg_msg(err, errlen, "bad character in host of '%s'", s);
    unsigned long long num;
    if (strlen(p) > 5 || cfg_parse_uint(p, &num) < 0 || num > 65535)
        return cfg_msg(err, errlen, "bad port in '%s' (expected 0 to 65535)", s);
    char buf[8];
    snprintf(buf, sizeof buf, "%llu", num);
    *host = strndup(h, (size_t)(he - h));
    *port = strdup(buf);
    if (!*host || !*port) {
        free(*host);
        free(*port);
        *host = *port = NULL;
        return cfg_msg(err, errlen, "out of memory parsing '%s'", s);
    }
    return 0;
}

/* Append a listener like tmpl; takes ownership of host and port either way. */
static int cfg_add_listen(struct kasi_config *cfg, char *host, char *port,
                          const struct listen_cfg *tmpl)
{
    struct listen_cfg *l = realloc(cfg->listen, (cfg->nlisten + 1) * sizeof *l);
    if (!l) {
        free(host);
        free(port);
        return -1;
    }
    cfg->listen = l;
    l[cfg->nlisten] = *tmpl;
    l[cfg->nlisten].host = host;
    l[cfg->nlisten].port = port;
    cfg->nlisten++;
    return 0;
}

/* A listener whose tls and auth are still to be resolved (cfg_resolve_listen). */
static const struct listen_cfg cfg_listen_plain = { .auth = -1 };

static int cfg_listen_addr(struct cfg_ctx *c, const struct ynode *v, const char *key,
                           const struct listen_cfg *tmpl)
{
    const char *s = cfg_scalar(c, v, key, "an address \"HOST:PORT\"");
    if (!s)
        return -1;
    char why[256], *host, *port;
    if (config_parse_listen(s, &host, &port, why, sizeof why) < 0)
        return cfg_fail(c, v->line, "%s: %s", key, why);
    struct listen_cfg l = *tmpl;
    l.line = v->line;
    return cfg_add_listen(c->cfg, host, port, &l) < 0 ? cfg_oom(c) : 0;
}

static int cfg_netlist(struct cfg_ctx *c, const struct ynode *v, const char *key,
                       struct netmask_list *l);

/* One key of a listener map other than address. */
static int cfg_listen_key(struct cfg_ctx *c, const char *name, const struct ynode *v,
                          const char *key, struct listen_cfg *l)
{
    static const char *const modes[] = { "none", "starttls", "implicit", NULL };
    static const char *const proxy[] = { "v1", "v2", "any", NULL };
    int i;
    if (!strcmp(name, "proxy_protocol")) {
        if (cfg_word(c, v, key, proxy, &i) < 0)
            return -1;
        l->proxy_protocol = (enum listen_proxy)(LISTEN_PROXY_V1 + i);
        return 0;
    }
    if (!strcmp(name, "proxy_from"))
        return cfg_netlist(c, v, key, &l->proxy_from);
    if (!strcmp(name, "submission"))
        return cfg_bool(c, v, key, &l->submission);
    if (!strcmp(name, "auth"))
        return cfg_bool(c, v, key, &l->auth);
    if (!strcmp(name, "auth_plaintext"))
        return cfg_bool(c, v, key, &l->auth_plaintext);
    if (!strcmp(name, "tls")) {
        if (cfg_word(c, v, key, modes, &i) < 0)
            return -1;
        l->tls = (enum listen_tls)(LISTEN_TLS_NONE + i);
        return 0;
    }
    return 1;
}

/* { address: "HOST:PORT", submission: bool, tls: mode, auth: bool,
 *   auth_plaintext: bool, proxy_protocol: v1|v2|any, proxy_from: [nets] } */
static int cfg_listen_map(struct cfg_ctx *c, const struct ynode *m, const char *key)
{
    const struct ynode *addr = NULL;
    struct listen_cfg l = cfg_listen_plain;
    char dotted[CFG_KEYLEN];
    for (size_t i = 0; i < m->n; i++) {
        cfg_dotted(dotted, sizeof dotted, key, m->keys[i]);
        if (!strcmp(m->keys[i], "address")) {
            addr = m->items[i];
            continue;
        }
        int rc = cfg_listen_key(c, m->keys[i], m->items[i], dotted, &l);
        if (rc > 0)
            rc = cfg_fail(c, m->key_lines[i], "unknown key '%s' (known: address, "
                          "submission, tls, auth, auth_plaintext, proxy_protocol, "
                          "proxy_from)", dotted);
        if (rc != 0) {
            netmask_list_free(&l.proxy_from);
            return -1;
        }
    }
    if (!addr) {
        netmask_list_free(&l.proxy_from);
        return cfg_fail(c, m->line, "%s: missing key 'address'", key);
    }
    cfg_dotted(dotted, sizeof dotted, key, "address");
    if (cfg_listen_addr(c, addr, dotted, &l) < 0) {
        netmask_list_free(&l.proxy_from);
        return -1;
    }
    c->cfg->listen[c->cfg->nlisten - 1].line = m->line;
    return 0;
}

static int cfg_set_listen(struct cfg_ctx *c, const struct ynode *v, const char *key,
                          const struct cfg_key *k)
{
    (void)k;
    if (cfg_is_null(v))
        return 0;
    if (v->type != YNODE_SEQ || v->n == 0)
        return cfg_type_error(c, v, key, "a list of addresses \"HOST:PORT\"");
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *item = v->items[i];
        char dotted[CFG_KEYLEN];
        if (snprintf(dotted, sizeof dotted, "%s[%zu]", key, i) < 0)
            dotted[0] = '\0';
        int rc = item->type == YNODE_MAP
                     ? cfg_listen_map(c, item, dotted)
                     : cfg_listen_addr(c, item, dotted, &cfg_listen_plain);
        if (rc < 0)
            return -1;
    }
    return 0;
}


static int cfg_set_bare_lf(struct cfg_ctx *c, const struct ynode *v, const char *key,
                           const struct cfg_key *k)
{
    static const char *const words[] = { "reject", "accept", NULL };
    int i;
    (void)k;
    if (cfg_word(c, v, key, words, &i) < 0)
        return -1;
    c->cfg->bare_lf_accept = i;
    return 0;
}

static int cfg_set_long_lines(struct cfg_ctx *c, const struct ynode *v, const char *key,
                              const struct cfg_key *k)
{
    static const char *const words[] = { "reject", "wrap", NULL };
    int i;
    (void)k;
    if (cfg_word(c, v, key, words, &i) < 0)
        return -1;
    c->cfg->long_lines_wrap = i;
    return 0;
}

static int cfg_set_log_target(struct cfg_ctx *c, const struct ynode *v, const char *key,
                              const struct cfg_key *k)
{
    static const char *const words[] = { "stderr", "syslog", NULL };
    int i;
    (void)k;
    if (cfg_word(c, v, key, words, &i) < 0)
        return -1;
    return cfg_replace(&c->cfg->log_target, words[i]) < 0 ? cfg_oom(c) : 0;
}

static int cfg_set_log_level(struct cfg_ctx *c, const struct ynode *v, const char *key,
                             const struct cfg_key *k)
{
    static const char *const words[] = { "error", "warn", "info", "debug", NULL };
    (void)k;
    return cfg_word(c, v, key, words, &c->cfg->log_level);
}

static int cfg_set_hostname(struct cfg_ctx *c, const struct ynode *v, const char *key,
                            const struct cfg_key *k)
{
    const char *s = cfg_scalar(c, v, key, "a host name");
    (void)k;
    if (!s)
        return -1;
    if (!cfg_hostname_ok(s))
        return cfg_type_error(c, v, key, "a host name");
    return cfg_replace(&c->cfg->hostname, s) < 0 ? cfg_oom(c) : 0;
}

static int cfg_set_spool(struct cfg_ctx *c, const struct ynode *v, const char *key,
                         const struct cfg_key *k)
{
    const char *s = cfg_scalar(c, v, key, "a directory");
    (void)k;
    if (!s)
        return -1;
    if (!*s)
        return cfg_type_error(c, v, key, "a directory");
    char *path = s[0] == '/' ? strdup(s) : cfg_join(c->cfg->dir, s);
    if (!path)
        return cfg_oom(c);
    free(c->cfg->spool_dir);
    c->cfg->spool_dir = path;
    return 0;
}

/* One "ADDR" or "ADDR/LEN" appended to l. */
static int cfg_net_item(struct cfg_ctx *c, const struct ynode *v, const char *key,
                        struct netmask_list *l)
{
    const char *why;
    struct netmask m;
    const char *s = cfg_scalar(c, v, key, "an address or ADDRESS/LENGTH");
    if (!s)
        return -1;
    if (netmask_parse(s, &m, &why) < 0)
        return cfg_fail(c, v->line, "%s: %s, got '%s'", key, why, s);
    return netmask_list_add(l, &m) < 0 ? cfg_oom(c) : 0;
}

/* A list of "ADDR" or "ADDR/LEN" into l, replacing what it held. */
static int cfg_netlist(struct cfg_ctx *c, const struct ynode *v, const char *key,
                       struct netmask_list *l)
{
    netmask_list_free(l);
    if (cfg_is_null(v))
        return 0;
    if (v->type != YNODE_SEQ)
        return cfg_type_error(c, v, key, "a list of addresses or networks");
    for (size_t i = 0; i < v->n; i++) {
        char dotted[CFG_KEYLEN];
        snprintf(dotted, sizeof dotted, "%s[%zu]", key, i);
        if (cfg_net_item(c, v->items[i], dotted, l) < 0)
            return -1;
    }
    return 0;
}

static int cfg_is_word(const struct ynode *v, const char *word)
{
    return v->type == YNODE_SCALAR && !strcmp(v->scalar, word);
}

/* limits.exempt: it replaces the default. The word relay stands for the
 * relay plugin's networks (added by cfg_exempt_relay). */
static int cfg_set_exempt(struct cfg_ctx *c, const struct ynode *v, const char *key,
                          const struct cfg_key *k)
{
    struct kasi_config *cfg = c->cfg;
    (void)k;
    netmask_list_free(&cfg->exempt);
    cfg->exempt_relay = 0;
    if (cfg_is_null(v))
        return 0;
    if (v->type != YNODE_SEQ)
        return cfg_type_error(c, v, key, "a list of addresses, networks or relay");
    for (size_t i = 0; i < v->n; i++) {
        const struct ynode *item = v->items[i];
        char dotted[CFG_KEYLEN];
        snprintf(dotted, sizeof dotted, "%s[%zu]", key, i);
        if (cfg_is_word(item, "relay"))
            cfg->exempt_relay = 1;
        else if (item->type == YNODE_SCALAR && !strpbrk(item->scalar, "0123456789:"))
            return cfg_fail(c, item->line, "%s: expected an address, ADDRESS/LENGTH or "
                            "relay, got '%s'", dotted, item->scalar);
        else if (cfg_net_item(c, item, dotted, &cfg->exempt) < 0)
            return -1;
    }
    return 0;
}

static int cfg_set_xclient_from(struct cfg_ctx *c, const struct ynode *v, const char *key,
                                const struct cfg_key *k)
{
    (void)k;
    return cfg_netlist(c, v, key, &c->cfg->xclient_from);
}

/* [127.0.0.0/8, "::1", relay] */
static int cfg_default_exempt(struct kasi_config *cfg)
{
    static const char *const nets[] = { "127.0.0.0/8", "::1", NULL };
    for (int i = 0; nets[i]; i++) {
        struct netmask m;
        const char *why;
        if (netmask_parse(nets[i], &m, &why) < 0 || netmask_list_add(&cfg->exempt, &m) < 0)
            return -1;
    }
    cfg->exempt_relay = 1;
    return 0;
}

/* ---- processes --------------------------------------------------------- */

/* "auto" (one worker per CPU, stored as 0) or 1..CONFIG_WORKERS_MAX. */
static int cfg_set_workers(struct cfg_ctx *c, const struct ynode *v, const char *key,
                           const struct cfg_key *k)
{
    if (v->type == YNODE_SCALAR && !strcmp(v->scalar, "auto")) {
        c->cfg->workers = 0;
        return 0;
    }
    const char *what = "auto or a number of processes";
    const char *s = cfg_scalar(c, v, key, what);
    unsigned long long n;
    (void)k;
    if (!s)
        return -1;
    if (cfg_parse_uint(s, &n) < 0)
        return cfg_type_error(c, v, key, what);
    if (n < 1 || n > CONFIG_WORKERS_MAX)
        return cfg_fail(c, v->line, "%s: must be auto or between 1 and %d, got '%s'",
                        key, CONFIG_WORKERS_MAX, s);
    c->cfg->workers = (unsigned)n;
    return 0;
}

/* user: / group: a name that exists now (checked again when workers start). */
static int cfg_set_account(struct cfg_ctx *c, const struct ynode *v, const char *key,
                           const struct cfg_key *k)
{
    int is_user = !strcmp(k->name, "user");
    const char *s = cfg_scalar(c, v, key, is_user ? "a user name" : "a group name");
    if (!s)
        return -1;
    if (is_user ? !getpwnam(s) : !getgrnam(s))
        return cfg_fail(c, v->line, "%s: no such %s '%s'", key,
                        is_user ? "user" : "group", s);
    return cfg_replace(is_user ? &c->cfg->user : &c->cfg->group, s) < 0 ? cfg_oom(c) : 0;
}

static int cfg_set_pid_file(struct cfg_ctx *c, const struct ynode *v, const char *key,
                            const struct cfg_key *k)
{
    const char *s = cfg_scalar(c, v, key, "a file name");
    (void)k;
    if (!s)
        return -1;
    if (!*s || s[strlen(s) - 1] == '/')
        return cfg_type_error(c, v, key, "a file name");
    char *path = s[0] == '/' ? strdup(s) : cfg_join(c->cfg->dir, s);
    if (!path)
        return cfg_oom(c);
    free(c->cfg->pid_file);
    c->cfg->pid_file = path;
    return 0;
}

/* ---- tls ------------------------------------------------------------- */

/* A file path: relative ones are taken relative to the config directory. */
static int cfg_path(struct cfg_ctx *c, const struct ynode *v, const char *key, char **out)
{
    const char *s = cfg_scalar(c, v, key, "a file name");
    if (!s)
        return -1;
    char *path = s[0] == '/' ? strdup(s) : cfg_join(c->cfg->dir, s);
    if (!path)
        return cfg_oom(c);
    free(*out);
    *out = path;
    return 0;
}

/* { cert: FILE, key: FILE } into the next slot of tls.certs. */
static int cfg_tls_cert(struct cfg_ctx *c, const struct ynode *m, const char *key)
{
    struct tls_cfg *t = &c->cfg->tls;
    if (m->type != YNODE_MAP)
        return cfg_type_error(c, m, key, "a map { cert: FILE, key: FILE }");
    struct tls_cert_cfg *n = realloc(t->certs, (t->ncerts + 1) * sizeof *n);
    if (!n)
        return cfg_oom(c);
    t->certs = n;
    struct tls_cert_cfg *e = &n[t->ncerts++];
    e->cert = e->key = NULL;
    char dotted[CFG_KEYLEN];
    for (size_t i = 0; i < m->n; i++) {
        cfg_dotted(dotted, sizeof dotted, key, m->keys[i]);
        char **slot = !strcmp(m->keys[i], "cert") ? &e->cert
                    : !strcmp(m->keys[i], "key") ? &e->key : NULL;
        if (!slot)
            return cfg_fail(c, m->key_lines[i], "unknown key '%s' (known: cert, key)",
                            dotted);
        if (cfg_path(c, m->items[i], dotted, slot) < 0)
            return -1;
    }
    if (!e->cert || !e->key)
        return cfg_fail(c, m->line, "%s: missing key '%s'", key, e->cert ? "key" : "cert");
    return 0;
}

static int cfg_set_tls_certs(struct cfg_ctx *c, const struct ynode *v, const char *key,
                             const struct cfg_key *k)
{
    (void)k;
    if (cfg_is_null(v))
        return 0;
    if (v->type != YNODE_SEQ || v->n == 0)
        return cfg_type_error(c, v, key, "a list of { cert: FILE, key: FILE }");
    for (size_t i = 0; i < v->n; i++) {
        char dotted[CFG_KEYLEN];
        if (snprintf(dotted, sizeof dotted, "%s[%zu]", key, i) < 0)
            dotted[0] = '\0';
        if (cfg_tls_cert(c, v->items[i], dotted) < 0)
            return -1;
    }
    return 0;
}

static int cfg_set_tls_min(struct cfg_ctx *c, const struct ynode *v, const char *key,
                           const struct cfg_key *k)
{
    static const char *const words[] = { "TLSv1.2", "TLSv1.3", NULL };
    int i;
    (void)k;
    if (cfg_word(c, v, key, words, &i) < 0)
        return -1;
    c->cfg->tls.min_version = i ? 0x0304 : 0x0303;
    return 0;
}

/* A cipher list: checked by OpenSSL when the contexts are built. */
static int cfg_set_tls_list(struct cfg_ctx *c, const struct ynode *v, const char *key,
                            const struct cfg_key *k)
{
    const char *s = cfg_scalar(c, v, key, "a cipher list");
    if (!s)
        return -1;
    char **slot = !strcmp(k->name, "ciphers") ? &c->cfg->tls.ciphers
                                              : &c->cfg->tls.ciphersuites;
    return cfg_replace(slot, s) < 0 ? cfg_oom(c) : 0;
}

/* ---- http ------------------------------------------------------------ */

static int cfg_set_http_listen(struct cfg_ctx *c, const struct ynode *v, const char *key,
                               const struct cfg_key *k)
{
    const char *s = cfg_scalar(c, v, key, "an address \"HOST:PORT\"");
    char why[256];
    (void)k;
    if (!s)
        return -1;
    free(c->cfg->http_host);
    free(c->cfg->http_port);
    if (config_parse_listen(s, &c->cfg->http_host, &c->cfg->http_port, why,
                            sizeof why) < 0)
        return cfg_fail(c, v->line, "%s: %s", key, why);
    c->cfg->http_line = v->line;
    return 0;
}

/* At least 16 printable characters, no spaces: it travels in a header. */
static int cfg_set_http_token(struct cfg_ctx *c, const struct ynode *v, const char *key,
                              const struct cfg_key *k)
{
    const char *s = cfg_scalar(c, v, key, "a token (16 or more characters)");
    (void)k;
    if (!s)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p <= ' ' || *p > '~')
            return cfg_fail(c, v->line, "%s: only printable characters, no spaces", key);
    if (strlen(s) < 16)
        return cfg_fail(c, v->line, "%s: must be 16 characters or more", key);
    return cfg_replace(&c->cfg->http_token, s) < 0 ? cfg_oom(c) : 0;
}

static int cfg_loopback(const char *host)
{
    unsigned char a[16];
    if (inet_pton(AF_INET, host, a) == 1)
        return a[0] == 127;
    if (inet_pton(AF_INET6, host, a) != 1)
        return 0;
    static const unsigned char one[16] = { [15] = 1 };
    static const unsigned char v4mapped[12] = { [10] = 0xff, [11] = 0xff };
    return !memcmp(a, one, 16) || (!memcmp(a, v4mapped, 12) && a[12] == 127);
}

/* The stats carry no secrets but a lot about the traffic: anything but
 * loopback needs a token. */
static int cfg_check_http(struct cfg_ctx *c)
{
    const struct kasi_config *cfg = c->cfg;
    if (cfg->http_host && !cfg->http_token && !cfg_loopback(cfg->http_host))
        return cfg_fail(c, cfg->http_line, "http.listen: %s is not a loopback address: "
                        "set http.token", cfg->http_host);
    return 0;
}

/* After the whole file: listener settings that depend on the tls section. */
static int cfg_check_listen(struct cfg_ctx *c)
{
    const struct kasi_config *cfg = c->cfg;
    for (size_t i = 0; i < cfg->nlisten; i++) {
        const struct listen_cfg *l = &cfg->listen[i];
        if ((l->tls == LISTEN_TLS_STARTTLS || l->tls == LISTEN_TLS_IMPLICIT) &&
            cfg->tls.ncerts == 0)
            return cfg_fail(c, l->line, "listen[%zu].tls: %s needs tls.certificates", i,
                            l->tls == LISTEN_TLS_STARTTLS ? "starttls" : "implicit");
        if (l->submission && l->auth == 0)
            return cfg_fail(c, l->line, "listen[%zu]: a submission listener needs auth", i);
        if (l->proxy_protocol && l->proxy_from.n == 0)
            return cfg_fail(c, l->line, "listen[%zu].proxy_from: proxy_protocol needs the "
                            "networks of the balancers that send it", i);
        if (!l->proxy_protocol && l->proxy_from.n)
            return cfg_fail(c, l->line, "listen[%zu].proxy_from: only with proxy_protocol", i);
    }
    return 0;
}

/* Defaults that depend on other keys: tls (starttls when certificates are
 * configured) and auth (on for submission listeners). */
static void cfg_resolve_listen(struct kasi_config *cfg)
{
    for (size_t i = 0; i < cfg->nlisten; i++) {
        struct listen_cfg *l = &cfg->listen[i];
        if (l->tls == LISTEN_TLS_DEFAULT)
            l->tls = cfg->tls.ncerts ? LISTEN_TLS_STARTTLS : LISTEN_TLS_NONE;
        if (l->auth < 0)
            l->auth = l->submission;
    }
}


/* ---- schema ------------------------------------------------------------ */

#define CFG_NUM(name, fn, field, lo, hi) \
    CFG_FIELD(struct kasi_config, name, fn, field, lo, hi)

static const struct cfg_key cfg_limits_keys[] = {
    CFG_NUM("max_connections", cfg_set_uint, max_connections, 1, 1000000),
    CFG_NUM("max_connections_per_ip", cfg_set_uint, max_conn_per_ip, 0, 1000000),
    CFG_NUM("max_recipients", cfg_set_uint, max_recipients, 1, 100000),
    CFG_NUM("max_errors", cfg_set_uint, max_errors, 1, 1000),
    CFG_NUM("max_message_size", cfg_set_size, max_message_size, 0, CFG_MAX_MSG),
    CFG_NUM("max_line_length", cfg_set_count, max_line_length, 78, 100000),
    CFG_NUM("max_command_length", cfg_set_count, max_command_length, 512, 65536),
    CFG_NUM("memory_buffer", cfg_set_size, memory_buffer, 1, CFG_GIB),
    CFG_NUM("ipv4_prefix", cfg_set_uint, ipv4_prefix, 1, 32),
    CFG_NUM("ipv6_prefix", cfg_set_uint, ipv6_prefix, 1, 128),
    CFG_FN("exempt", cfg_set_exempt),
    CFG_NUM("counters", cfg_set_uint, counters, 1024, 1U << 24),
    CFG_NUM("max_junk_commands", cfg_set_uint, max_junk_commands, 0, 1000000),
    { 0 }
};

static const struct cfg_key cfg_timeouts_keys[] = {
    CFG_NUM("command", cfg_set_seconds, timeout_command, 0, CFG_MAX_SECONDS),
    CFG_NUM("data_block", cfg_set_seconds, timeout_data_block, 0, CFG_MAX_SECONDS),
    CFG_NUM("shutdown", cfg_set_seconds, timeout_shutdown, 0, CFG_MAX_SECONDS),
    CFG_NUM("tls_handshake", cfg_set_seconds, timeout_tls_handshake, 0, 3600),
    CFG_NUM("close", cfg_set_seconds, timeout_close, 0, 3600),
    CFG_NUM("min_data_rate", cfg_set_uint, min_data_rate, 0, 1000000000),
    CFG_NUM("proxy_header", cfg_set_seconds, timeout_proxy_header, 0, 3600),
    { 0 }
};

static const struct cfg_key cfg_data_keys[] = {
    CFG_FN("bare_lf", cfg_set_bare_lf),
    CFG_FN("long_lines", cfg_set_long_lines),
    { 0 }
};

static const struct cfg_key cfg_log_keys[] = {
    CFG_FN("target", cfg_set_log_target),
    CFG_FN("level", cfg_set_log_level),
    { 0 }
};

static const struct cfg_key cfg_tls_keys[] = {
    CFG_FN("certificates", cfg_set_tls_certs),
    CFG_FN("min_version", cfg_set_tls_min),
    CFG_FN("ciphers", cfg_set_tls_list),
    CFG_FN("ciphersuites", cfg_set_tls_list),
    { 0 }
};

static const struct cfg_key cfg_auth_keys[] = {
    CFG_NUM("max_failures", cfg_set_uint, auth_max_failures, 1, 1000),
    CFG_NUM("max_failures_per_ip", cfg_set_uint, auth_max_failures_per_ip, 0, 1000000),
    CFG_NUM("failure_window", cfg_set_seconds, auth_failure_window, 0, CFG_MAX_SECONDS),
    { 0 }
};

static const struct cfg_key cfg_http_keys[] = {
    CFG_FN("listen", cfg_set_http_listen),
    CFG_FN("token", cfg_set_http_token),
    { 0 }
};

static const struct cfg_key cfg_top_keys[] = {
    CFG_FN("hostname", cfg_set_hostname),
    CFG_FN("listen", cfg_set_listen),
    CFG_SECTION("limits", cfg_limits_keys),
    CFG_SECTION("timeouts", cfg_timeouts_keys),
    CFG_SECTION("data", cfg_data_keys),
    CFG_FN("spool_dir", cfg_set_spool),
    CFG_SECTION("log", cfg_log_keys),
    CFG_SECTION("tls", cfg_tls_keys),
    CFG_SECTION("auth", cfg_auth_keys),
    CFG_SECTION("http", cfg_http_keys),
    CFG_FN("workers", cfg_set_workers),
    CFG_FN("user", cfg_set_account),
    CFG_FN("group", cfg_set_account),
    CFG_FN("pid_file", cfg_set_pid_file),
    CFG_FN("xclient_from", cfg_set_xclient_from),
    { 0 }
};


/* ---- loading ----------------------------------------------------------- */

/* Without spool_dir in smtp.yaml: the Makefile's SPOOLDIR (compiled in, so
 * an installed kasi spools to /var/spool/kasi whatever its -c), else
 * DIR/spool. */
static char *cfg_default_spool(const char *dir)
{
#ifdef KASI_SPOOLDIR
    (void)dir;
    return strdup(KASI_SPOOLDIR);
#else
    return cfg_join(dir, "spool");
#endif
}

static int cfg_defaults(struct kasi_config *cfg, const char *dir)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->max_connections = 1000;
    cfg->max_conn_per_ip = 50;
    cfg->max_recipients = 100;
    cfg->max_errors = 10;
    cfg->max_message_size = 50 * CFG_KIB * CFG_KIB;
    cfg->max_line_length = 998;
    cfg->max_command_length = 4096;
    cfg->memory_buffer = CFG_KIB * CFG_KIB;
    cfg->ipv4_prefix = 32;
    cfg->ipv6_prefix = 64;
    cfg->counters = 16384;
    cfg->timeout_command = 300;
    cfg->timeout_data_block = 180;
    cfg->timeout_shutdown = 30;
    cfg->timeout_tls_handshake = 20;
    cfg->timeout_close = 10;
    cfg->min_data_rate = 500;
    cfg->max_junk_commands = 2000;
    cfg->timeout_proxy_header = 10;
    cfg->bare_lf_accept = 0;
    cfg->long_lines_wrap = 0;
    cfg->log_level = 2;
    cfg->tls.min_version = 0x0303;
    cfg->auth_max_failures = 3;
    cfg->auth_max_failures_per_ip = 10;
    cfg->auth_failure_window = 600;
    cfg->dir = strdup(dir);
    cfg->spool_dir = cfg_default_spool(dir);
    cfg->log_target = strdup("stderr");
    if (cfg_default_exempt(cfg) < 0)
        return -1;
    return cfg->dir && cfg->spool_dir && cfg->log_target ? 0 : -1;
}

/* c->file as a tree in *root: 1; 0 when the file does not exist (*root
 * NULL); -1 with the error in c->err. */
static int cfg_read_tree(struct cfg_ctx *c, struct ynode **root)
{
    struct stat st;
    *root = NULL;
    if (stat(c->file, &st) < 0 && errno == ENOENT)
        return 0;
    *root = ytree_load_file(c->file, c->err, c->errlen);
    return *root ? 1 : -1;
}

/* DIR/smtp.yaml; a missing file leaves the defaults. */
static int cfg_load_yaml(struct cfg_ctx *c)
{
    struct ynode *root;
    int got = cfg_read_tree(c, &root);
    if (got <= 0)
        return got;
    int rc = root->type == YNODE_MAP
                 ? cfg_walk(c, root, NULL, cfg_top_keys)
                 : cfg_fail(c, root->line, "expected a map of settings at the top level");
    ytree_free(root);
    if (rc == 0)
        rc = cfg_check_listen(c);
    if (rc == 0)
        rc = cfg_check_http(c);
    return rc;
}

static void cfg_trim(char *s)
{
    size_t len = strlen(s);
    while (len > 0 && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    size_t lead = strspn(s, " \t");
    memmove(s, s + lead, len - lead + 1);
}

/* DIR/me: its first line, trimmed, is the host name. */
static int cfg_read_me(struct cfg_ctx *c, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : cfg_fail(c, 0, "%s", strerror(errno));
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = getline(&line, &cap, f);
    int rc = n < 0 && ferror(f) ? cfg_fail(c, 0, "%s", strerror(errno)) : 0;
    fclose(f);
    if (rc == 0 && n < 0)
        rc = cfg_fail(c, 1, "expected a host name, got nothing");
    if (rc == 0) {
        cfg_trim(line);
        if (!cfg_hostname_ok(line))
            rc = cfg_fail(c, 1, "expected a host name, got '%s'", line);
        else if (cfg_replace(&c->cfg->hostname, line) < 0)
            rc = cfg_oom(c);
    }
    free(line);
    return rc;
}

static int cfg_finish(struct cfg_ctx *c)
{
    struct kasi_config *cfg = c->cfg;
    if (!cfg->hostname) {
        char buf[256] = "";
        if (gethostname(buf, sizeof buf - 1) < 0 || !buf[0])
            strcpy(buf, "localhost");
        if (cfg_replace(&cfg->hostname, buf) < 0)
            return cfg_oom(c);
    }
    if (cfg->nlisten == 0) {
        char *host = strdup("127.0.0.1"), *port = strdup("2525");
        if (!host || !port) {
            free(host);
            free(port);
            return cfg_oom(c);
        }
        if (cfg_add_listen(cfg, host, port, &cfg_listen_plain) < 0)
            return cfg_oom(c);
    }
    cfg_resolve_listen(cfg);
    return 0;
}

/* ---- the relay plugin's networks (limits.exempt: relay) --------------- */

/* Whether c->file (config/plugins) lists name: the first word of a line,
 * after # comments are cut, as lua/lua_gen.c reads it. No file: the
 * default list (queue/spool only). 1, 0, or -1 with the error. */
static int cfg_lists_plugin(struct cfg_ctx *c, const char *name)
{
    FILE *f = fopen(c->file, "r");
    if (!f)
        return errno == ENOENT ? 0 : cfg_fail(c, 0, "%s", strerror(errno));
    char line[1024], *save;
    int found = 0;
    while (!found && fgets(line, sizeof line, f)) {
        line[strcspn(line, "#")] = '\0';
        const char *tok = strtok_r(line, " \t\r\n", &save);
        found = tok && !strcmp(tok, name);
    }
    fclose(f);
    return found;
}

/* allow[i] is not a network: the plugin's schema's words. */
static int cfg_relay_bad(struct cfg_ctx *c, const struct ynode *item, size_t i)
{
    static const char *const what = "expected an address or network "
                                    "(192.0.2.0/24, 2001:db8::/32)";
    if (item->type == YNODE_SCALAR)
        return cfg_fail(c, item->line, "allow[%zu]: %s, got '%s'", i, what, item->scalar);
    return cfg_fail(c, item->line, "allow[%zu]: %s, got a %s", i, what,
                    item->type == YNODE_MAP ? "map" : "list");
}

/* allow: of c->file (config/relay.yaml) appended to l, read as the relay
 * plugin reads it (its schema's cidr: host bits after the prefix are
 * dropped), its errors in the same words. A missing file or key: none. */
static int cfg_relay_allow(struct cfg_ctx *c, struct netmask_list *l)
{
    struct ynode *root;
    int got = cfg_read_tree(c, &root);
    if (got <= 0)
        return got;
    const struct ynode *v = ytree_get(root, "allow");
    int rc = 0;
    if (v && !cfg_is_null(v) && v->type != YNODE_SEQ)
        rc = cfg_type_error(c, v, "allow", "a list of addresses or networks");
    for (size_t i = 0; rc == 0 && v && v->type == YNODE_SEQ && i < v->n; i++) {
        const struct ynode *item = v->items[i];
        struct netmask m;
        const char *why;
        if (item->type != YNODE_SCALAR || netmask_parse_lax(item->scalar, &m, &why) < 0)
            rc = cfg_relay_bad(c, item, i);
        else if (netmask_list_add(l, &m) < 0)
            rc = cfg_oom(c);
    }
    ytree_free(root);
    return rc;
}

/* limits.exempt names relay: when DIR/plugins lists the relay plugin, its
 * allow networks (DIR/relay.yaml) join the exempt ones. */
static int cfg_exempt_relay(struct cfg_ctx *c, const char *dir)
{
    char *list = cfg_join(dir, "plugins"), *yaml = cfg_join(dir, "relay.yaml");
    int rc = list && yaml ? 0 : cfg_oom(c);
    c->file = list;
    if (rc == 0)
        rc = cfg_lists_plugin(c, "relay");
    c->file = yaml;
    if (rc > 0)
        rc = cfg_relay_allow(c, &c->cfg->exempt);
    free(list);
    free(yaml);
    return rc;
}

/* The config directory must exist: a mistyped -c is an error, not defaults. */
static int cfg_check_dir(struct cfg_ctx *c)
{
    struct stat st;
    if (stat(c->file, &st) < 0)
        return cfg_fail(c, 0, "%s", strerror(errno));
    if (!S_ISDIR(st.st_mode))
        return cfg_fail(c, 0, "not a directory");
    return 0;
}

int config_load(const char *dir, struct kasi_config *cfg, char *err, size_t errlen)
{
    struct cfg_ctx c = { .base = cfg, .cfg = cfg, .err = err, .errlen = errlen };
    if (err && errlen)
        err[0] = '\0';
    if (!dir || !*dir)
        dir = ".";
    if (cfg_defaults(cfg, dir) < 0)
        return cfg_oom(&c);
    c.file = dir;
    if (cfg_check_dir(&c) < 0)
        return -1;
    char *yaml = cfg_join(dir, "smtp.yaml"), *me = cfg_join(dir, "me");
    int rc = yaml && me ? 0 : cfg_oom(&c);
    c.file = yaml;
    if (rc == 0)
        rc = cfg_load_yaml(&c);
    c.file = me;
    if (rc == 0)
        rc = cfg_read_me(&c, me);
    if (rc == 0)
        rc = cfg_finish(&c);
    if (rc == 0 && cfg->exempt_relay)
        rc = cfg_exempt_relay(&c, dir);
    free(yaml);
    free(me);
    return rc;
}

static void cfg_free_listen(struct listen_cfg *l, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(l[i].host);
        free(l[i].port);
        netmask_list_free(&l[i].proxy_from);
    }
    free(l);
}

int config_override_user(struct kasi_config *cfg, const char *user, char *err,
                         size_t errlen)
{
    if (!user)
        return 0;
    if (!getpwnam(user))
        return cfg_msg(err, errlen, "--user %s: no such user", user);
    return cfg_replace(&cfg->user, user) < 0 ? cfg_msg(err, errlen, "%s", "out of memory") : 0;
}

int config_override_listen(struct kasi_config *cfg, char *const *addrs, size_t n,
                           char *err, size_t errlen)
{
    if (!n)
        return 0;
    struct listen_cfg *l = calloc(n, sizeof *l);
    if (!l)
        return cfg_msg(err, errlen, "%s", "out of memory");
    for (size_t i = 0; i < n; i++) {
        char why[256];
        if (config_parse_listen(addrs[i], &l[i].host, &l[i].port, why, sizeof why) < 0) {
            snprintf(err, errlen, "--listen %s: %s", addrs[i], why);
            cfg_free_listen(l, i);
            return -1;
        }
    }
    cfg_free_listen(cfg->listen, cfg->nlisten);
    cfg->listen = l;
    cfg->nlisten = n;
    return 0;
}

int config_override_http(struct kasi_config *cfg, const char *addr, char *err,
                         size_t errlen)
{
    char *host, *port, why[256];
    if (!addr)
        return 0;
    if (config_parse_listen(addr, &host, &port, why, sizeof why) < 0) {
        snprintf(err, errlen, "--http-listen %s: %s", addr, why);
        return -1;
    }
    if (!cfg->http_token && !cfg_loopback(host)) {
        free(host);
        free(port);
        return cfg_msg(err, errlen, "--http-listen %s: not a loopback address: "
                       "set http.token", addr);
    }
    free(cfg->http_host);
    free(cfg->http_port);
    cfg->http_host = host;
    cfg->http_port = port;
    return 0;
}

void config_free(struct kasi_config *cfg)
{
    if (!cfg)
        return;
    cfg_free_listen(cfg->listen, cfg->nlisten);
    for (size_t i = 0; i < cfg->tls.ncerts; i++) {
        free(cfg->tls.certs[i].cert);
        free(cfg->tls.certs[i].key);
    }
    free(cfg->tls.certs);
    free(cfg->tls.ciphers);
    free(cfg->tls.ciphersuites);
    free(cfg->dir);
    free(cfg->hostname);
    free(cfg->spool_dir);
    free(cfg->log_target);
    free(cfg->http_host);
    free(cfg->http_port);
    free(cfg->http_token);
    netmask_list_free(&cfg->exempt);
    free(cfg->user);
    free(cfg->group);
    free(cfg->pid_file);
    netmask_list_free(&cfg->xclient_from);
    memset(cfg, 0, sizeof *cfg);
}
