/* generation.c — preparing and comparing generations, and the table of
 * listening sockets they share (see generation.h). */
#include "generation.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/log.h"
#include "core/paths.h"
#include "core/sdnotify.h"
#include "msg/spool.h"
#include "net/dns.h"
#include "net/http.h"
#include "net/tls.h"
#include "smtp/server.h"

/* ------------------------------------------------------- listeners */

struct sgen_listener {
    char *host, *port;          /* NULL: passed by socket activation, unclaimed */
    int occ;                    /* the how-many-th listener with this address
                                   (several "127.0.0.1:0" are distinct);
                                   SGEN_HTTP_OCC: the stats page's */
    int fd;
    int refs;                   /* generations (current, pending) using it */
    struct sockaddr_storage sa; /* activated sockets: their address */
    socklen_t salen;
    int v6only;                 /* activated IPv6 socket: IPV6_V6ONLY */
};

static struct {
    struct sgen_listener *l;
    size_t n;
    int lock_fd;
} sg = { NULL, 0, -1 };

static struct sgen_listener *lt_add(void)
{
    struct sgen_listener *l = realloc(sg.l, (sg.n + 1) * sizeof *l);
    if (!l)
        return NULL;
    sg.l = l;
    memset(&l[sg.n], 0, sizeof *l);
    l[sg.n].fd = -1;
    return &l[sg.n++];
}

/* An entry for fd, a socket bound now for host:port. NULL when out of
 * memory (fd closed then). */
static struct sgen_listener *lt_keep(int fd, const char *host, const char *port, int occ)
{
    struct sgen_listener *l = lt_add();
    if (!l) {
        close(fd);
        return NULL;
    }
    l->fd = fd;
    l->occ = occ;
    l->host = strdup(host);
    l->port = strdup(port);
    return l;
}

static void lt_remove(size_t i)
{
    if (sg.l[i].fd >= 0)
        close(sg.l[i].fd);
    free(sg.l[i].host);
    free(sg.l[i].port);
    memmove(&sg.l[i], &sg.l[i + 1], (sg.n - i - 1) * sizeof sg.l[i]);
    sg.n--;
}

static int same_addr(const struct sockaddr_storage *a, socklen_t al,
                     const struct sockaddr *b, socklen_t bl)
{
    return al == bl && !memcmp(a, b, al);
}

/* Whether the activated socket l is a dual-stack one on every address
 * ([::]:P without IPV6_V6ONLY, kasi.socket's "ListenStream=P" with
 * BindIPv6Only=both), which takes IPv4 too; *port is its port. */
static int sa_dual(const struct sgen_listener *l, int *port)
{
    const struct sockaddr_in6 *a = (const void *)&l->sa;
    *port = ntohs(a->sin6_port);
    return l->salen && l->sa.ss_family == AF_INET6 && !l->v6only &&
           IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr);
}

/* An unclaimed activated socket for lc: the same address; unless exact,
 * for "0.0.0.0:P" a dual-stack [::]:P socket too (a listen: with only
 * 0.0.0.0:25 under a socket unit that says "ListenStream=25"). */
static struct sgen_listener *lt_activated(const struct listen_cfg *lc, int exact)
{
    struct addrinfo hints = { .ai_socktype = SOCK_STREAM,
                              .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV };
    struct addrinfo *res;
    struct sgen_listener *found = NULL, *dual = NULL;
    if (!strcmp(lc->port, "0") || getaddrinfo(lc->host, lc->port, &hints, &res) != 0)
        return NULL;
    int any4 = !exact && !strcmp(lc->host, "0.0.0.0");
    for (size_t i = 0; i < sg.n && !found; i++) {
        struct sgen_listener *l = &sg.l[i];
        int port;
        if (l->host || !l->salen)
            continue;
        if (same_addr(&l->sa, l->salen, res->ai_addr, (socklen_t)res->ai_addrlen))
            found = l;
        else if (any4 && !dual && sa_dual(l, &port) && port == atoi(lc->port))
            dual = l;
    }
    freeaddrinfo(res);
    return found ? found : dual;
}

static struct sgen_listener *lt_find(const char *host, const char *port, int occ)
{
    for (size_t i = 0; i < sg.n; i++)
        if (sg.l[i].host && sg.l[i].occ == occ && !strcmp(sg.l[i].host, host) &&
            !strcmp(sg.l[i].port, port))
            return &sg.l[i];
    return NULL;
}

static void lt_claim(struct sgen_listener *l, const struct listen_cfg *lc, int occ)
{
    l->host = strdup(lc->host);
    l->port = strdup(lc->port);
    l->occ = occ;
    log_msg(LOG_LVL_INFO, "listener %s:%s passed by the service manager", lc->host,
            lc->port);
}

/* lc cannot be bound: if a dual-stack socket passed for [::] holds its
 * IPv4 port, say so and how to pass the two families apart. */
static const char *lt_bind_hint(const struct listen_cfg *lc, int err)
{
    int port;
    if (err != EADDRINUSE || strcmp(lc->host, "0.0.0.0"))
        return "";
    for (size_t i = 0; i < sg.n; i++)
        if (sa_dual(&sg.l[i], &port) && port == atoi(lc->port))
            return " (the service manager passed [::] on this port as one dual-stack "
                   "socket, which takes IPv4 too: pass 0.0.0.0 and [::] as two sockets, "
                   "BindIPv6Only=ipv6-only, as contrib/systemd/kasi.socket does)";
    return "";
}

/* The socket for lc, the occ-th listener of its config with that address:
 * kept, passed to us, or bound now. -1 with err. */
static int lt_get(const struct listen_cfg *lc, int occ, const char *confdir, char *err,
                  size_t errlen)
{
    struct sgen_listener *l = lt_find(lc->host, lc->port, occ);
    if (!l && (l = lt_activated(lc, 0)))
        lt_claim(l, lc, occ);
    if (!l) {
        int fd = server_bind_one(lc);
        int saved = errno;
        if (fd < 0 || !(l = lt_keep(fd, lc->host, lc->port, occ))) {
            snprintf(err, errlen, "%s/smtp.yaml:%d: listen %s:%s: %s%s", confdir, lc->line,
                     lc->host, lc->port, strerror(fd < 0 ? saved : ENOMEM),
                     fd < 0 ? lt_bind_hint(lc, saved) : "");
            return -1;
        }
    }
    l->refs++;
    return l->fd;
}

static void lt_put(int fd)
{
    for (size_t i = 0; i < sg.n; i++) {
        if (sg.l[i].fd == fd) {
            if (--sg.l[i].refs <= 0)
                lt_remove(i);
            return;
        }
    }
}

void sgen_adopt_activated(void)
{
    int first, n = sdn_listen_fds(&first);
    for (int fd = first; fd < first + n; fd++) {
        struct sgen_listener *l = lt_add();
        if (!l) {
            close(fd);
            continue;
        }
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);  /* systemd's default */
        l->fd = fd;                                           /* is blocking */
        l->salen = sizeof l->sa;
        if (getsockname(fd, (struct sockaddr *)&l->sa, &l->salen) < 0)
            l->salen = 0;
        socklen_t len = sizeof l->v6only;
        if (l->sa.ss_family == AF_INET6 &&
            getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &l->v6only, &len) < 0)
            l->v6only = 0;
    }
    if (n)
        log_msg(LOG_LVL_INFO, "socket activation: %d sockets passed", n);
}

void sgen_prune(void)
{
    for (size_t i = sg.n; i-- > 0;) {
        if (!sg.l[i].host) {
            log_msg(LOG_LVL_WARN, "a socket passed by the service manager matches no "
                    "listen: address, closing it");
            lt_remove(i);
        }
    }
}

void sgen_drop_listeners(struct sgen *g)
{
    for (size_t i = 0; g->lfd && i < g->cfg.nlisten; i++)
        if (g->lfd[i] >= 0)
            lt_put(g->lfd[i]);
    free(g->lfd);
    g->lfd = NULL;
    if (g->http_fd >= 0)
        lt_put(g->http_fd);
    g->http_fd = -1;
}

static int sgen_has_fd(const struct sgen *g, int fd)
{
    for (size_t i = 0; g->lfd && i < g->cfg.nlisten; i++)
        if (g->lfd[i] == fd)
            return 1;
    return fd >= 0 && fd == g->http_fd;
}

void sgen_close_others(const struct sgen *g)
{
    for (size_t i = 0; i < sg.n; i++)
        if (sg.l[i].fd >= 0 && !sgen_has_fd(g, sg.l[i].fd))
            close(sg.l[i].fd);
}

void sgen_close_all(void)
{
    while (sg.n)
        lt_remove(sg.n - 1);
}

/* The how-many-th listen: entry with the address of entry i. */
static int sgen_occ(const struct kasi_config *c, size_t i)
{
    int occ = 0;
    for (size_t j = 0; j < i; j++)
        occ += !strcmp(c->listen[j].host, c->listen[i].host) &&
               !strcmp(c->listen[j].port, c->listen[i].port);
    return occ;
}

/* Passed sockets go first to the entries with their very address, then
 * stand in for others: with 0.0.0.0:25 and [::]:25 configured, a [::]:25
 * socket is [::]:25's whichever entry comes first. */
static void sgen_claim_exact(const struct kasi_config *c)
{
    for (size_t i = 0; i < c->nlisten; i++) {
        const struct listen_cfg *lc = &c->listen[i];
        struct sgen_listener *l;
        int occ = sgen_occ(c, i);
        if (!lt_find(lc->host, lc->port, occ) && (l = lt_activated(lc, 1)))
            lt_claim(l, lc, occ);
    }
}

static int sgen_listeners(struct sgen *g, char *err, size_t errlen)
{
    g->lfd = calloc(g->cfg.nlisten, sizeof *g->lfd);
    if (!g->lfd) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < g->cfg.nlisten; i++)
        g->lfd[i] = -1;
    sgen_claim_exact(&g->cfg);
    for (size_t i = 0; i < g->cfg.nlisten; i++) {
        g->lfd[i] = lt_get(&g->cfg.listen[i], sgen_occ(&g->cfg, i), g->confdir, err,
                           errlen);
        if (g->lfd[i] < 0) {
            sgen_drop_listeners(g);
            return -1;
        }
    }
    return 0;
}

/* The stats page's socket: the one the generation before had for the same
 * http.listen, or bound now (never one passed by the service manager). */
#define SGEN_HTTP_OCC (-1)      /* its entries in the table */

static int sgen_http(struct sgen *g, char *err, size_t errlen)
{
    const struct kasi_config *c = &g->cfg;
    struct sgen_listener *l;
    char why[512];
    if (!c->http_host)
        return 0;
    l = lt_find(c->http_host, c->http_port, SGEN_HTTP_OCC);
    if (!l) {
        int fd = http_bind(c, why, sizeof why);
        if (fd < 0 || !(l = lt_keep(fd, c->http_host, c->http_port, SGEN_HTTP_OCC))) {
            snprintf(err, errlen, "%s/smtp.yaml:%d: %s", g->confdir, c->http_line,
                     fd < 0 ? why : "out of memory");
            return -1;
        }
    }
    l->refs++;
    g->http_fd = l->fd;
    return 0;
}

/* ------------------------------------------------------- state dir */

static int sgen_numeric(const char *s)
{
    return *s && strspn(s, "0123456789") == strlen(s);
}

/* Why the supervisor may not write where it must, and what to do. */
static const char *sgen_perm_hint(int err)
{
    return err == EACCES || err == EPERM
               ? " (under the shipped systemd unit kasi's root cannot override file "
                 "permissions: make spool_dir root's, with the workers' group, mode "
                 "1770; see docs/install.md)"
               : "";
}

/* The state directory is the supervisor's, with the workers' group (they
 * read their generation's copy in it): 0710. One an older kasi made for
 * the workers' user is taken back (that needs CAP_CHOWN). */
static int sgen_state_dir(const char *dir, const struct priv_ids *ids)
{
    struct stat st;
    if (mkdir(dir, 0710) < 0 && errno != EEXIST)
        return -1;
    if (lstat(dir, &st) < 0)
        return -1;
    if (!S_ISDIR(st.st_mode)) {
        errno = ENOTDIR;
        return -1;
    }
    if (ids->change && (st.st_uid != geteuid() || st.st_gid != ids->gid) &&
        lchown(dir, geteuid(), ids->gid) < 0)
        return -1;
    return chmod(dir, 0710);
}

int sgen_state_open(struct sgen_env *env, const struct priv_ids *ids, char *err,
                    size_t errlen)
{
    char lock[PATH_MAX + 8];
    if (sgen_state_dir(env->state, ids) < 0)
        goto fail;
    snprintf(lock, sizeof lock, "%s/lock", env->state);
    sg.lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (sg.lock_fd < 0)
        goto fail;
    if (flock(sg.lock_fd, LOCK_EX | LOCK_NB) < 0) {
        snprintf(err, errlen, "%s: another kasi is running with this spool directory",
                 env->state);
        return -1;
    }
    DIR *d = opendir(env->state);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        char path[PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", env->state, e->d_name);
        if (sgen_numeric(e->d_name))
            snap_remove(path);
    }
    if (d)
        closedir(d);
    return 0;
fail:
    snprintf(err, errlen, "state directory %s: %s%s", env->state, strerror(errno),
             sgen_perm_hint(errno));
    return -1;
}

void sgen_state_close(const struct sgen_env *env)
{
    char path[PATH_MAX + 16];
    if (!env->state[0] || sg.lock_fd < 0)
        return;
    snprintf(path, sizeof path, "%s/status", env->state);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock", env->state);
    unlink(path);
    close(sg.lock_fd);
    sg.lock_fd = -1;
    rmdir(env->state);          /* fails, harmlessly, if a worker left files */
}

/* ------------------------------------------------------- preparing */

static unsigned long long sgen_hash_file(unsigned long long h, const char *path)
{
    FILE *f = fopen(path, "rb");
    int c;
    if (!f)
        return h * 31;
    while ((c = getc(f)) != EOF)
        h = (h ^ (unsigned char)c) * 1099511628211ULL;
    fclose(f);
    return h;
}

static unsigned long long sgen_tls_hash(const struct tls_cfg *t)
{
    unsigned long long h = 1469598103934665603ULL ^ (unsigned long long)t->min_version;
    for (size_t i = 0; i < t->ncerts; i++)
        h = sgen_hash_file(sgen_hash_file(h, t->certs[i].cert), t->certs[i].key);
    return h;
}

static int sgen_load(struct sgen *g, struct sgen_env *env, char *err, size_t errlen)
{
    if (config_load(env->confdir, &g->cfg, err, errlen) < 0 ||
        config_override_listen(&g->cfg, env->listen, env->nlisten, err, errlen) < 0 ||
        config_override_user(&g->cfg, env->user, err, errlen) < 0 ||
        config_override_http(&g->cfg, env->http_listen, err, errlen) < 0)
        return -1;
    if (priv_resolve(g->cfg.user, g->cfg.group, &g->ids, err, errlen) < 0)
        return -1;
    if (!priv_can_signal(&g->ids)) {
        snprintf(err, errlen, "user: %s: the supervisor needs CAP_KILL to signal "
                 "workers of another user (see docs/install.md)", g->ids.name);
        return -1;
    }
    struct dns_settings dns;    /* the workers read dns.yaml: check it here */
    if (dns_settings_load(g->cfg.dir, &dns, err, errlen) < 0 ||
        tls_prepare(&g->cfg, &g->tls, err, errlen) < 0)
        return -1;
    g->tls_hash = sgen_tls_hash(&g->cfg.tls);
    int given;
    if (spool_prepare(g->cfg.spool_dir) < 0 ||
        priv_spool(&g->ids, g->cfg.spool_dir, &given) < 0) {
        int e = errno;
        snprintf(err, errlen, "spool_dir %s: %s%s", g->cfg.spool_dir, strerror(e),
                 sgen_perm_hint(e));
        return -1;
    }
    if (given)
        log_msg(LOG_LVL_INFO, "spool_dir %s now belongs to %s (mode 0700)",
                g->cfg.spool_dir, g->ids.name);
    return 0;
}

/* The state directory, opened by the first generation. */
static int sgen_state(struct sgen *g, struct sgen_env *env, char *err, size_t errlen)
{
    if (env->state[0])
        return 0;
    snprintf(env->state, sizeof env->state, "%s/.gen", g->cfg.spool_dir);
    if (sgen_state_open(env, &g->ids, err, errlen) < 0) {
        env->state[0] = '\0';
        return -1;
    }
    return 0;
}

/* The plugin trees, lowest priority first so the winners are copied
 * last: the shipped ones (core/paths.h), then the site's beside the config
 * directory; then the config directory itself. */
static int sgen_copy(struct sgen *g, char *err, size_t errlen)
{
    static const char *const trees[] = { "plugins", "lua" };
    for (size_t i = 0; i < 2; i++) {
        char shipped[PATH_MAX], site[PATH_MAX + 16];
        if (paths_find_shipped(trees[i], shipped, sizeof shipped) == 0 &&
            snap_copy_tree(&g->snap, shipped, trees[i], 1, err, errlen) < 0)
            return -1;
        snprintf(site, sizeof site, "%s/../%s", g->confdir, trees[i]);
        if (snap_copy_tree(&g->snap, site, trees[i], 1, err, errlen) < 0)
            return -1;
    }
    return snap_copy_tree(&g->snap, g->confdir, "config", 0, err, errlen);
}

static int sgen_snapshot(struct sgen *g, struct sgen_env *env, char *err,
                         size_t errlen)
{
    char dir[PATH_MAX + 16], conf[PATH_MAX + 32];
    snprintf(dir, sizeof dir, "%s/%u", env->state, ++env->attempts);
    snap_remove(dir);           /* left by an attempt that failed */
    if (snap_begin(&g->snap, dir, g->cfg.spool_dir, err, errlen) < 0)
        return -1;
    if (sgen_copy(g, err, errlen) < 0)
        return -1;
    snprintf(conf, sizeof conf, "%s/config", dir);
    char *d = strdup(conf);
    if (!d) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    free(g->cfg.dir);
    g->cfg.dir = d;
    return 0;
}

/* The state directory and the snapshot: made for the workers' group. */
static int sgen_files(struct sgen *g, struct sgen_env *env, char *err, size_t errlen)
{
    if (priv_share_begin(&g->ids) < 0) {
        snprintf(err, errlen, "setfsgid %u: %s", (unsigned)g->ids.gid, strerror(errno));
        return -1;
    }
    int rc = sgen_state(g, env, err, errlen) < 0 || sgen_snapshot(g, env, err, errlen) < 0
                 ? -1 : 0;
    priv_share_end();
    return rc;
}

static unsigned sgen_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > CONFIG_WORKERS_MAX ? CONFIG_WORKERS_MAX : (unsigned)n;
}

int sgen_prepare(struct sgen *g, unsigned id, struct sgen_env *env, char *err,
                 size_t errlen)
{
    memset(g, 0, sizeof *g);
    g->id = id;
    g->http_fd = -1;
    g->confdir = strdup(env->confdir);
    if (!g->confdir || sgen_load(g, env, err, errlen) < 0 ||
        sgen_files(g, env, err, errlen) < 0 || sgen_listeners(g, err, errlen) < 0 ||
        sgen_http(g, err, errlen) < 0) {
        sgen_free(g);
        return -1;
    }
    g->nworkers = g->cfg.workers ? g->cfg.workers : sgen_cpus();
    g->refs = 1;
    return 0;
}

void sgen_free(struct sgen *g)
{
    sgen_drop_listeners(g);
    if (g->snap.dir)
        snap_remove(g->snap.dir);
    snap_free(&g->snap);
    tls_drop(g->tls);
    config_free(&g->cfg);
    free(g->confdir);
    memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------- comparing */

#define SGEN_FIELD(name, field) \
    { name, offsetof(struct kasi_config, field), sizeof(((struct kasi_config *)0)->field) }

static const struct { const char *name; size_t off, size; } sgen_fields[] = {
    SGEN_FIELD("max_connections", max_connections),
    SGEN_FIELD("max_connections_per_ip", max_conn_per_ip),
    SGEN_FIELD("max_recipients", max_recipients),
    SGEN_FIELD("max_errors", max_errors),
    SGEN_FIELD("max_message_size", max_message_size),
    SGEN_FIELD("max_line_length", max_line_length),
    SGEN_FIELD("max_command_length", max_command_length),
    SGEN_FIELD("memory_buffer", memory_buffer),
    SGEN_FIELD("ipv4_prefix", ipv4_prefix),
    SGEN_FIELD("ipv6_prefix", ipv6_prefix),
    SGEN_FIELD("max_junk_commands", max_junk_commands),
    SGEN_FIELD("timeouts.command", timeout_command),
    SGEN_FIELD("timeouts.data_block", timeout_data_block),
    SGEN_FIELD("timeouts.shutdown", timeout_shutdown),
    SGEN_FIELD("timeouts.tls_handshake", timeout_tls_handshake),
    SGEN_FIELD("timeouts.close", timeout_close),
    SGEN_FIELD("timeouts.min_data_rate", min_data_rate),
    SGEN_FIELD("timeouts.proxy_header", timeout_proxy_header),
    SGEN_FIELD("data.bare_lf", bare_lf_accept),
    SGEN_FIELD("data.long_lines", long_lines_wrap),
    SGEN_FIELD("auth.max_failures", auth_max_failures),
    SGEN_FIELD("auth.max_failures_per_ip", auth_max_failures_per_ip),
    SGEN_FIELD("auth.failure_window", auth_failure_window),
    SGEN_FIELD("workers", workers),
    SGEN_FIELD("log.level", log_level),
};

struct sgen_out {
    char *buf;
    size_t len, used;
    int section;                /* a word was added to the current section */
};

static void out_add(struct sgen_out *o, const char *section, const char *fmt,
                    const char *a, const char *b)
{
    if (o->used + 1 >= o->len)
        return;
    if (!o->section)
        o->used += (size_t)snprintf(o->buf + o->used, o->len - o->used, "%s%s",
                                    o->used ? "; " : "", section);
    o->section = 1;
    if (o->used < o->len)
        o->used += (size_t)snprintf(o->buf + o->used, o->len - o->used, fmt, a, b);
    if (o->used >= o->len)
        o->used = o->len - 1;
}

static const struct listen_cfg *find_listen(const struct kasi_config *c,
                                            const struct listen_cfg *l)
{
    for (size_t i = 0; i < c->nlisten; i++)
        if (!strcmp(c->listen[i].host, l->host) && !strcmp(c->listen[i].port, l->port))
            return &c->listen[i];
    return NULL;
}

static void diff_listeners(struct sgen_out *o, const struct kasi_config *a,
                           const struct kasi_config *b)
{
    o->section = 0;
    for (size_t i = 0; i < b->nlisten; i++) {
        const struct listen_cfg *l = &b->listen[i], *p = find_listen(a, l);
        if (!p)
            out_add(o, "listeners", " +%s:%s", l->host, l->port);
        else if (p->tls != l->tls || p->submission != l->submission ||
                 p->auth != l->auth || p->auth_plaintext != l->auth_plaintext)
            out_add(o, "listeners", " ~%s:%s", l->host, l->port);
    }
    for (size_t i = 0; i < a->nlisten; i++)
        if (!find_listen(b, &a->listen[i]))
            out_add(o, "listeners", " -%s:%s", a->listen[i].host, a->listen[i].port);
}

static int str_differs(const char *a, const char *b)
{
    return (a || b) && (!a || !b || strcmp(a, b));
}

static int nets_differ(const struct netmask_list *a, const struct netmask_list *b)
{
    return a->n != b->n || (a->n && memcmp(a->nets, b->nets, a->n * sizeof *a->nets));
}

static void diff_settings(struct sgen_out *o, const struct kasi_config *a,
                          const struct kasi_config *b)
{
    o->section = 0;
    for (size_t i = 0; i < sizeof sgen_fields / sizeof sgen_fields[0]; i++)
        if (memcmp((const char *)a + sgen_fields[i].off,
                   (const char *)b + sgen_fields[i].off, sgen_fields[i].size))
            out_add(o, "limits", " %s%s", sgen_fields[i].name, "");
    if (nets_differ(&a->exempt, &b->exempt))
        out_add(o, "limits", " %s%s", "exempt", "");
    o->section = 0;
    if (str_differs(a->hostname, b->hostname))
        out_add(o, "settings", " %s%s", "hostname", "");
    if (str_differs(a->spool_dir, b->spool_dir))
        out_add(o, "settings", " %s%s", "spool_dir", "");
    if (str_differs(a->user, b->user) || str_differs(a->group, b->group))
        out_add(o, "settings", " %s%s", "user", "");
    if (nets_differ(&a->xclient_from, &b->xclient_from))
        out_add(o, "settings", " %s%s", "xclient_from", "");
    if (str_differs(a->log_target, b->log_target))
        out_add(o, "settings", " %s%s", "log.target", "");
    if (str_differs(a->http_host, b->http_host) || str_differs(a->http_port, b->http_port))
        out_add(o, "settings", " %s%s", "http.listen", "");
    if (str_differs(a->http_token, b->http_token))
        out_add(o, "settings", " %s%s", "http.token", "");
    if (str_differs(a->pid_file, b->pid_file))
        out_add(o, "settings", " %s%s", "pid_file", "");
}

static void diff_files(struct sgen_out *o, const struct snap *a, const struct snap *b)
{
    o->section = 0;
    for (size_t i = 0; i < b->n; i++) {
        const struct snap_file *f = &b->files[i], *p = snap_find(a, f->rel);
        if (!p || p->hash != f->hash)
            out_add(o, "files", " %s%s", p ? "~" : "+", f->rel);
    }
    for (size_t i = 0; i < a->n; i++)
        if (!snap_find(b, a->files[i].rel))
            out_add(o, "files", " -%s%s", a->files[i].rel, "");
}

void sgen_diff(const struct sgen *old, const struct sgen *g, char *out, size_t outlen)
{
    struct sgen_out o = { out, outlen, 0, 0 };
    out[0] = '\0';
    if (!old) {
        snprintf(out, outlen, "first generation");
        return;
    }
    diff_listeners(&o, &old->cfg, &g->cfg);
    diff_settings(&o, &old->cfg, &g->cfg);
    o.section = 0;
    if (old->tls_hash != g->tls_hash ||
        str_differs(old->cfg.tls.ciphers, g->cfg.tls.ciphers) ||
        str_differs(old->cfg.tls.ciphersuites, g->cfg.tls.ciphersuites))
        out_add(&o, "tls", " %s%s", "certificates or settings changed", "");
    diff_files(&o, &old->snap, &g->snap);
    if (!out[0])
        snprintf(out, outlen, "nothing changed");
}

void sgen_log_listeners(const struct sgen *old, const struct sgen *g)
{
    for (size_t i = 0; i < g->cfg.nlisten; i++)
        if (!old || !find_listen(&old->cfg, &g->cfg.listen[i]))
            server_log_listener(g->lfd[i], &g->cfg.listen[i]);
}
