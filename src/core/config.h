/* config.h — kasi's core configuration: config/smtp.yaml (listeners, host
 * name, limits, timeouts, spool) and config/me. Loading is strict: an
 * unknown key, a wrong type or an out-of-range value is an error naming the
 * file, line and key. */
#ifndef KASI_CONFIG_H
#define KASI_CONFIG_H

#include <stddef.h>

#include "core/netmask.h"

/* TLS on a listener. DEFAULT (a --listen address): STARTTLS when
 * certificates are configured, else none. */
enum listen_tls {
    LISTEN_TLS_DEFAULT = 0, LISTEN_TLS_NONE, LISTEN_TLS_STARTTLS, LISTEN_TLS_IMPLICIT
};

/* PROXY protocol on a listener: the versions it takes (bits: 1 v1, 2 v2). */
enum listen_proxy {
    LISTEN_PROXY_NONE = 0, LISTEN_PROXY_V1 = 1, LISTEN_PROXY_V2 = 2, LISTEN_PROXY_ANY = 3
};

struct listen_cfg {
    char *host;          /* "127.0.0.1", "::1", "0.0.0.0", "::" */
    char *port;          /* "2525" */
    int submission;      /* listener is a submission port (AUTH required) */
    enum listen_tls tls; /* none | starttls | implicit */
    int auth;            /* AUTH offered (default: submission) */
    int auth_plaintext;  /* AUTH allowed without TLS (default false) */
    enum listen_proxy proxy_protocol;  /* a PROXY header comes first (default none) */
    struct netmask_list proxy_from;    /* the balancers that may send it */
    int line;            /* where smtp.yaml defines it, 0 elsewhere */
};

struct tls_cert_cfg {
    char *cert;          /* PEM certificate with its chain (path joined to dir) */
    char *key;           /* PEM private key */
};

/* The tls: section. No certificates: TLS is off everywhere. */
struct tls_cfg {
    struct tls_cert_cfg *certs;  /* [0] is the default; SNI picks the others */
    size_t ncerts;
    int min_version;             /* 0x0303 TLS 1.2 (default) | 0x0304 TLS 1.3 */
    char *ciphers;               /* TLS 1.2 cipher list, NULL: built-in default */
    char *ciphersuites;          /* TLS 1.3 suites, NULL: OpenSSL's default */
};

struct kasi_config {
    char *dir;                 /* config directory as given */
    char *hostname;            /* config/me, else smtp.yaml hostname, else gethostname() */
    struct listen_cfg *listen; /* at least one */
    size_t nlisten;

    /* limits */
    unsigned max_connections;      /* global, default 1000 */
    unsigned max_conn_per_ip;      /* default 50; 0 = unlimited */
    unsigned max_recipients;       /* per transaction, default 100 */
    unsigned max_errors;           /* bad commands before 421, default 10 */
    size_t max_message_size;       /* bytes, default 50 MiB; 0 = none */
    size_t max_line_length;        /* DATA line limit without CRLF, default 998 */
    size_t max_command_length;     /* command line limit incl. CRLF, default 4096 */
    size_t memory_buffer;          /* message bytes kept in RAM before spilling, default 1 MiB */
    unsigned ipv4_prefix;          /* clients are counted per network: IPv4 /32, */
    unsigned ipv6_prefix;          /* IPv6 /64 by default */
    struct netmask_list exempt;    /* networks no per-client limit applies to,
                                      default 127.0.0.0/8, ::1 and relay */
    int exempt_relay;              /* exempt names relay: the relay plugin's allow
                                      networks (config/relay.yaml) are in exempt
                                      when config/plugins lists it */
    unsigned counters;             /* entries of the shared rate table, default 16384 */
    unsigned max_junk_commands;    /* commands that move no mail (NOOP, HELP, VRFY,
                                      RSET, HELO/EHLO, RCPT over max_recipients)
                                      before 421, default 2000; reset by each
                                      accepted message; 0 = unlimited */

    /* timeouts in seconds (RFC 5321 §4.5.3.2 defaults) */
    double timeout_command;        /* 300 */
    double timeout_data_block;     /* 180 */
    double timeout_shutdown;       /* grace period at SIGTERM, 30 */
    double timeout_tls_handshake;  /* a TLS handshake must end within, 20 */
    double timeout_close;          /* a closing session is freed after, 10 */
    unsigned min_data_rate;        /* DATA/BDAT bytes per second after the first
                                      data_block seconds, default 500; 0 = none */
    double timeout_proxy_header;   /* for a listener's PROXY header, 10 */

    struct netmask_list xclient_from;  /* clients that may send XCLIENT, default none */

    int bare_lf_accept;            /* bare_lf: "reject" (default, 0) | "accept" (1) */
    int long_lines_wrap;           /* long_lines: "reject" (default, 0) | "wrap" (1) */

    char *spool_dir;               /* default: the compiled-in SPOOLDIR;
                                      a relative path is taken relative to dir
                                      (stored joined: "DIR/../spool") */
    char *log_target;              /* "stderr" (default) | "syslog" */
    int log_level;                 /* 0 error .. 3 debug, default 2 (info) */

    struct tls_cfg tls;

    /* the auth: section — failed AUTH attempts */
    unsigned auth_max_failures;        /* per connection before 421, default 3 */
    unsigned auth_max_failures_per_ip; /* per client address (IPv6: /64) within
                                          the window, default 10; 0 = no limit */
    double auth_failure_window;        /* seconds, default 600 */

    /* the http: section — the stats page, /metrics, /stats.json */
    char *http_host, *http_port;       /* NULL: no HTTP listener */
    char *http_token;                  /* Bearer token, NULL: none */
    int http_line;                     /* where http.listen is */

    /* processes (see src/supervisor.h) */
    unsigned workers;              /* worker processes; 0 = auto (one per CPU) */
    char *user;                    /* workers run as this user (NULL: no switch) */
    char *group;                   /* and group (NULL: the user's primary group) */
    char *pid_file;                /* the supervisor's pid (joined to dir), or NULL */
};

#define CONFIG_WORKERS_MAX 64

/* Load DIR/smtp.yaml and DIR/me (and, for limits.exempt's relay,
 * DIR/plugins and DIR/relay.yaml). Returns 0, or -1 with "file:line: key: why"
 * in err. A missing smtp.yaml means all defaults; cfg is always left freeable. */
int config_load(const char *dir, struct kasi_config *cfg, char *err, size_t errlen);
void config_free(struct kasi_config *cfg);
/* --listen: replace the configured listeners by addrs (n > 0). 0, or -1
 * with "--listen ADDR: why" in err and cfg unchanged. */
/* --user NAME: the workers' user instead of smtp.yaml's user: (and its
 * primary group unless group: is set). NULL: no change. 0 or -1 with err. */
int config_override_user(struct kasi_config *cfg, const char *user, char *err,
                         size_t errlen);
int config_override_listen(struct kasi_config *cfg, char *const *addrs, size_t n,
                           char *err, size_t errlen);
/* --http-listen ADDR: the statistics page on ADDR instead of http.listen,
 * under the same rule (not loopback: http.token must be set). NULL: no
 * change. 0, or -1 with "--http-listen ADDR: why" in err. */
int config_override_http(struct kasi_config *cfg, const char *addr, char *err,
                         size_t errlen);

/* Parse a listen address "HOST:PORT" or "[IPv6]:PORT" (port 0..65535; 0 lets
 * the OS pick). Returns 0 with *host and *port malloc'd (host without the
 * brackets, port as plain decimal), or -1 with a reason in err and both NULL. */
int config_parse_listen(const char *s, char **host, char **port, char *err, size_t errlen);

#endif
