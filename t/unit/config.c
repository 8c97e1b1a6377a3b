/* config.c — unit tests for the YAML tree loader and the strict core config
 * loader: defaults, a full valid file, every class of error with its exact
 * file:line message, config/me, size suffixes and listen addresses; the
 * table mechanism (config_table.h) on a settings struct of its own. Each
 * case writes a fresh temporary config directory and removes it after. */
#include "tap.h"
#include "core/config.h"
#include "core/config_table.h"
#include "core/yaml_tree.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *tdir_make(void)
{
    char *dir = strdup("/tmp/kasi-config-XXXXXX");
    if (!dir || !mkdtemp(dir)) {
        printf("Bail out! mkdtemp failed\n");
        exit(255);
    }
    return dir;
}

static void tdir_put(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) {
        printf("Bail out! cannot write %s\n", path);
        exit(255);
    }
    fputs(text, f);
    fclose(f);
}

static void tdir_remove(char *dir)
{
    static const char *const names[] = { "smtp.yaml", "me", "t.yaml", "plugins",
                                         "relay.yaml", NULL };
    char path[512];
    for (int i = 0; names[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    if (rmdir(dir) < 0)
        printf("# could not remove %s\n", dir);
    free(dir);
}

/* Load yaml (and me when not NULL) from a fresh dir; err gets the message
 * with the directory prefix replaced by "DIR". */
static int load(const char *yaml, const char *me, struct kasi_config *cfg,
                char *err, size_t errlen)
{
    char *dir = tdir_make();
    if (yaml)
        tdir_put(dir, "smtp.yaml", yaml);
    if (me)
        tdir_put(dir, "me", me);
    char raw[1024];
    int rc = config_load(dir, cfg, raw, sizeof raw);
    size_t dl = strlen(dir);
    if (strncmp(raw, dir, dl) == 0)
        snprintf(err, errlen, "DIR%s", raw + dl);
    else
        snprintf(err, errlen, "%s", raw);
    tdir_remove(dir);
    return rc;
}

static void load_fails(const char *yaml, const char *want, const char *name)
{
    struct kasi_config cfg;
    char err[1024];
    int rc = load(yaml, NULL, &cfg, err, sizeof err);
    is_int(rc, -1, "%s: refused", name);
    is_str(err, want, "%s: message", name);
    config_free(&cfg);
}

static void test_defaults(void)
{
    struct kasi_config cfg;
    char *dir = tdir_make();
    char err[512], spool[600];
    is_int(config_load(dir, &cfg, err, sizeof err), 0, "defaults: empty dir loads");
#ifdef KASI_SPOOLDIR
    snprintf(spool, sizeof spool, "%s", KASI_SPOOLDIR);    /* make SPOOLDIR= */
#else
    snprintf(spool, sizeof spool, "%s/spool", dir);
#endif
    is_str(cfg.dir, dir, "defaults: dir kept");
    ok(cfg.hostname && cfg.hostname[0], "defaults: host name from the system");
    is_int(cfg.nlisten, 1, "defaults: one listener");
    is_str(cfg.listen[0].host, "127.0.0.1", "defaults: listen host");
    is_str(cfg.listen[0].port, "2525", "defaults: listen port");
    is_int(cfg.listen[0].submission, 0, "defaults: not submission");
    is_int(cfg.max_connections, 1000, "defaults: max_connections");
    is_int(cfg.max_conn_per_ip, 50, "defaults: max_connections_per_ip");
    is_int(cfg.max_recipients, 100, "defaults: max_recipients");
    is_int(cfg.max_errors, 10, "defaults: max_errors");
    is_int(cfg.max_message_size, 50 << 20, "defaults: max_message_size");
    is_int(cfg.max_line_length, 998, "defaults: max_line_length");
    is_int(cfg.max_command_length, 4096, "defaults: max_command_length");
    is_int(cfg.memory_buffer, 1 << 20, "defaults: memory_buffer");
    is_int(cfg.ipv4_prefix, 32, "defaults: ipv4_prefix");
    is_int(cfg.ipv6_prefix, 64, "defaults: ipv6_prefix");
    is_int(cfg.counters, 16384, "defaults: counters");
    unsigned char lo[16], lo6[16], other[16];
    netmask_addr("127.0.0.9", lo);
    netmask_addr("::1", lo6);
    netmask_addr("192.0.2.1", other);
    ok(cfg.exempt.n == 2 && netmask_list_match(&cfg.exempt, lo) &&
       netmask_list_match(&cfg.exempt, lo6) && !netmask_list_match(&cfg.exempt, other),
       "defaults: exempt is loopback (127.0.0.0/8, ::1)");
    is_int(cfg.exempt_relay, 1, "defaults: and relay");
    ok(cfg.timeout_command == 300 && cfg.timeout_data_block == 180 &&
       cfg.timeout_shutdown == 30, "defaults: timeouts");
    ok(cfg.timeout_tls_handshake == 20 && cfg.timeout_close == 10 && cfg.min_data_rate == 500,
       "defaults: tls_handshake, close, min_data_rate");
    is_int(cfg.max_junk_commands, 2000, "defaults: max_junk_commands");
    is_int(cfg.bare_lf_accept, 0, "defaults: bare_lf");
    is_int(cfg.long_lines_wrap, 0, "defaults: long_lines");
    is_str(cfg.spool_dir, spool, "defaults: spool_dir is the compiled-in SPOOLDIR");
    is_str(cfg.log_target, "stderr", "defaults: log target");
    is_int(cfg.log_level, 2, "defaults: log level info");
    config_free(&cfg);
    ok(cfg.hostname == NULL && cfg.listen == NULL, "config_free clears");
    config_free(&cfg);
    tdir_remove(dir);

    const char *empties[] = { "", "# only a comment\n", "---\n", "limits:\ntimeouts: ~\n" };
    for (size_t i = 0; i < sizeof empties / sizeof *empties; i++) {
        is_int(load(empties[i], NULL, &cfg, err, sizeof err), 0, "empty file %zu loads", i);
        is_int(cfg.max_recipients, 100, "empty file %zu: defaults", i);
        config_free(&cfg);
    }
}

static const char full_yaml[] =
    "# a full configuration\n"
    "hostname: mx.example.org\n"
    "listen:\n"
    "  - 0.0.0.0:25\n"
    "  - \"[::1]:2525\"\n"
    "  - address: 127.0.0.1:587\n"
    "    submission: yes\n"
    "  - { address: \"[::]:0\", submission: false }\n"
    "limits:\n"
    "  max_connections: 20\n"
    "  max_connections_per_ip: 0\n"
    "  max_recipients: 7\n"
    "  max_errors: 3\n"
    "  max_message_size: 10M\n"
    "  max_line_length: 2000\n"
    "  max_command_length: 1024\n"
    "  memory_buffer: 64K\n"
    "  ipv4_prefix: 24\n"
    "  ipv6_prefix: 48\n"
    "  exempt: [192.0.2.0/24, \"2001:db8::/32\"]\n"
    "  counters: 4096\n"
    "timeouts:\n"
    "  command: 12.5\n"
    "  data_block: 60\n"
    "  shutdown: 2\n"
    "data:\n"
    "  bare_lf: accept\n"
    "  long_lines: wrap\n"
    "spool_dir: /var/spool/kasi\n"
    "log:\n"
    "  target: syslog\n"
    "  level: debug\n";

static void test_full(void)
{
    struct kasi_config cfg;
    char err[512];
    is_int(load(full_yaml, NULL, &cfg, err, sizeof err), 0, "full: loads");
    is_str(err, "", "full: no message");
    is_str(cfg.hostname, "mx.example.org", "full: hostname");
    is_int(cfg.nlisten, 4, "full: four listeners");
    if (cfg.nlisten == 4) {
        is_str(cfg.listen[0].host, "0.0.0.0", "full: listen[0] host");
        is_str(cfg.listen[0].port, "25", "full: listen[0] port");
        is_str(cfg.listen[1].host, "::1", "full: listen[1] IPv6 host");
        is_str(cfg.listen[1].port, "2525", "full: listen[1] port");
        is_str(cfg.listen[2].host, "127.0.0.1", "full: listen[2] host");
        is_int(cfg.listen[2].submission, 1, "full: listen[2] submission");
        is_str(cfg.listen[3].host, "::", "full: listen[3] host");
        is_str(cfg.listen[3].port, "0", "full: listen[3] port 0");
        is_int(cfg.listen[3].submission, 0, "full: listen[3] not submission");
    }
    is_int(cfg.max_connections, 20, "full: max_connections");
    is_int(cfg.max_conn_per_ip, 0, "full: max_connections_per_ip 0");
    is_int(cfg.max_recipients, 7, "full: max_recipients");
    is_int(cfg.max_errors, 3, "full: max_errors");
    is_int(cfg.max_message_size, 10 << 20, "full: max_message_size 10M");
    is_int(cfg.max_line_length, 2000, "full: max_line_length");
    is_int(cfg.ipv4_prefix, 24, "full: ipv4_prefix");
    is_int(cfg.ipv6_prefix, 48, "full: ipv6_prefix");
    is_int(cfg.counters, 4096, "full: counters");
    unsigned char in4[16], in6[16], lo[16];
    netmask_addr("192.0.2.77", in4);
    netmask_addr("2001:db8:ffff::1", in6);
    netmask_addr("127.0.0.1", lo);
    ok(cfg.exempt.n == 2 && netmask_list_match(&cfg.exempt, in4) &&
       netmask_list_match(&cfg.exempt, in6) && !netmask_list_match(&cfg.exempt, lo),
       "full: exempt replaces the loopback default");
    is_int(cfg.max_command_length, 1024, "full: max_command_length");
    is_int(cfg.memory_buffer, 64 << 10, "full: memory_buffer 64K");
    ok(cfg.timeout_command == 12.5, "full: timeouts.command 12.5");
    ok(cfg.timeout_data_block == 60, "full: timeouts.data_block");
    ok(cfg.timeout_shutdown == 2, "full: timeouts.shutdown");
    is_int(cfg.bare_lf_accept, 1, "full: bare_lf accept");
    is_int(cfg.long_lines_wrap, 1, "full: long_lines wrap");
    is_str(cfg.spool_dir, "/var/spool/kasi", "full: absolute spool_dir kept");
    is_str(cfg.log_target, "syslog", "full: log target");
    is_int(cfg.log_level, 3, "full: log level debug");
    config_free(&cfg);
}

static void test_exempt_none(void)
{
    struct kasi_config cfg;
    char err[512];
    is_int(load("limits:\n  exempt: []\n", NULL, &cfg, err, sizeof err), 0,
           "exempt: [] loads");
    is_int(cfg.exempt.n, 0, "exempt: [] exempts nobody");
    config_free(&cfg);
    is_int(load("limits:\n  exempt:\n", NULL, &cfg, err, sizeof err), 0,
           "exempt: (nothing) loads");
    is_int(cfg.exempt.n, 0, "exempt: (nothing) exempts nobody");
    config_free(&cfg);
}

/* Load smtp.yaml yaml with config/plugins list (NULL: none) and
 * config/relay.yaml relay (NULL: none); err as load()'s. */
static int load_relay(const char *yaml, const char *list, const char *relay,
                      struct kasi_config *cfg, char *err, size_t errlen)
{
    char *dir = tdir_make(), raw[900];
    tdir_put(dir, "smtp.yaml", yaml);
    if (list)
        tdir_put(dir, "plugins", list);
    if (relay)
        tdir_put(dir, "relay.yaml", relay);
    int rc = config_load(dir, cfg, raw, sizeof raw);
    size_t dl = strlen(dir);
    snprintf(err, errlen, "%s%s", strncmp(raw, dir, dl) ? "" : "DIR",
             strncmp(raw, dir, dl) ? raw : raw + dl);
    tdir_remove(dir);
    return rc;
}

static int exempts(const struct kasi_config *cfg, const char *ip)
{
    unsigned char a[16];
    return netmask_addr(ip, a) == 0 && netmask_list_match(&cfg->exempt, a);
}

static void test_exempt_relay(void)
{
    static const char list[] = "# the list\nrelay timeout=5\nqueue/spool\n";
    static const char relay[] = "allow:\n  - 192.0.2.0/24\n  - 10.1.2.3/8\n  - \"2001:db8::/32\"\n";
    struct kasi_config cfg;
    char err[1024];
    is_int(load_relay("hostname: a\n", list, relay, &cfg, err, sizeof err), 0,
           "relay: default exempt loads");
    ok(exempts(&cfg, "127.0.0.5") && exempts(&cfg, "::1") && exempts(&cfg, "192.0.2.9") &&
       exempts(&cfg, "10.200.0.1") && exempts(&cfg, "2001:db8::7") &&
       !exempts(&cfg, "198.51.100.1"), "relay: the default exempts loopback and relay's "
       "allow (10.1.2.3/8 as the plugin reads it: 10.0.0.0/8)");
    config_free(&cfg);
    is_int(load_relay("limits:\n  exempt: [relay]\n", list, relay, &cfg, err, sizeof err), 0,
           "relay: exempt: [relay] loads");
    ok(exempts(&cfg, "192.0.2.9") && !exempts(&cfg, "127.0.0.1"),
       "relay: exempt: [relay] is relay's networks only");
    config_free(&cfg);
    load_relay("limits:\n  exempt: [192.0.2.0/25]\n", list, relay, &cfg, err, sizeof err);
    ok(exempts(&cfg, "192.0.2.9") && !exempts(&cfg, "192.0.2.200") && !cfg.exempt_relay,
       "relay: an exempt list without relay leaves relay.yaml out");
    config_free(&cfg);
    load_relay("hostname: a\n", "# relay\nrelay_x\nqueue/spool\n", relay, &cfg, err,
               sizeof err);
    ok(!exempts(&cfg, "192.0.2.9") && exempts(&cfg, "127.0.0.1"),
       "relay: not in config/plugins (commented out): its networks are not exempt");
    config_free(&cfg);
    load_relay("hostname: a\n", NULL, relay, &cfg, err, sizeof err);
    ok(!exempts(&cfg, "192.0.2.9"), "relay: no config/plugins (queue/spool only): none");
    config_free(&cfg);
    is_int(load_relay("hostname: a\n", list, NULL, &cfg, err, sizeof err), 0,
           "relay: no relay.yaml loads");
    is_int(cfg.exempt.n, 2, "relay: no relay.yaml: loopback only");
    config_free(&cfg);
    is_int(load_relay("hostname: a\n", list, "allow:\n  - 10.0.0.0/33\n", &cfg, err,
                      sizeof err), -1, "relay: a bad network in relay.yaml is refused");
    is_str(err, "DIR/relay.yaml:2: allow[0]: expected an address or network (192.0.2.0/24, "
           "2001:db8::/32), got '10.0.0.0/33'", "relay: with relay.yaml's line");
    config_free(&cfg);
    load_relay("hostname: a\n", list, "allow: 10.0.0.0/8\n", &cfg, err, sizeof err);
    is_str(err, "DIR/relay.yaml:1: allow: expected a list of addresses or networks, "
           "got '10.0.0.0/8'", "relay: allow not a list");
    config_free(&cfg);
    load_relay("hostname: a\n", list, "allow: [10.0.0.0/8\n", &cfg, err, sizeof err);
    ok(!strncmp(err, "DIR/relay.yaml:2: ", 18), "relay: a YAML syntax error names relay.yaml "
       "(%s)", err);
    config_free(&cfg);
}

static void test_shipped(void)
{
    struct kasi_config cfg;
    char err[512];
    if (access("config/smtp.yaml", R_OK) != 0) {
        ok(1, "# SKIP shipped config/smtp.yaml not found from here");
        return;
    }
    int rc = config_load("config", &cfg, err, sizeof err);
    is_int(rc, 0, "shipped config loads");
    if (rc != 0)
        printf("#   %s\n", err);
    is_int(cfg.nlisten, 1, "shipped: one listener");
    if (cfg.nlisten == 1) {
        is_str(cfg.listen[0].host, "127.0.0.1", "shipped: loopback");
        is_str(cfg.listen[0].port, "2525", "shipped: port 2525");
    }
    is_str(cfg.spool_dir, "config/../spool", "shipped: spool_dir ../spool");
    is_int(cfg.max_recipients, 100, "shipped: defaults kept");
    is_int(cfg.max_message_size, 50 << 20, "shipped: max_message_size 50M");
    config_free(&cfg);
}

static const char known_top[] =
    "known: hostname, listen, limits, timeouts, data, spool_dir, log, tls, auth, http, "
    "workers, user, group, pid_file, xclient_from";

static void test_errors(void)
{
    char want[512];
    load_fails("hostname: a\nfoo: [1, 2\n", "DIR/smtp.yaml:3: did not find expected ',' or ']' "
               "(while parsing a flow sequence at line 2)", "syntax error");
    load_fails("a: b: c\n", "DIR/smtp.yaml:1: mapping values are not allowed in this context",
               "syntax error, nested value");
    load_fails("hostname: \"x\n", "DIR/smtp.yaml:2: found unexpected end of stream "
               "(while scanning a quoted scalar at line 1)", "unterminated quote");
    snprintf(want, sizeof want, "DIR/smtp.yaml:2: unknown key 'limts' (%s)", known_top);
    load_fails("hostname: a\nlimts:\n  max_recipients: 5\n", want, "unknown key at top");
    load_fails("limits:\n  max_connections: 5\n  max_recipent: 5\n",
               "DIR/smtp.yaml:3: unknown key 'limits.max_recipent' (known: max_connections, "
               "max_connections_per_ip, max_recipients, max_errors, max_message_size, "
               "max_line_length, max_command_length, memory_buffer, ipv4_prefix, ipv6_prefix, "
               "exempt, counters, max_junk_commands)", "unknown nested key");
    load_fails("limits:\n  ipv4_prefix: 33\n",
               "DIR/smtp.yaml:2: limits.ipv4_prefix: must be between 1 and 32, got '33'",
               "ipv4_prefix over 32");
    load_fails("limits:\n  ipv6_prefix: 0\n",
               "DIR/smtp.yaml:2: limits.ipv6_prefix: must be between 1 and 128, got '0'",
               "ipv6_prefix 0");
    load_fails("limits:\n  exempt: 127.0.0.1\n",
               "DIR/smtp.yaml:2: limits.exempt: expected a list of addresses, networks or "
               "relay, got '127.0.0.1'", "exempt not a list");
    load_fails("limits:\n  exempt:\n    - 10.0.0.0/8\n    - 10.0.0.1/8\n",
               "DIR/smtp.yaml:4: limits.exempt[1]: address bits set after the prefix length, "
               "got '10.0.0.1/8'", "exempt: host bits set");
    load_fails("limits:\n  exempt: [\"::/200\"]\n",
               "DIR/smtp.yaml:2: limits.exempt[0]: the prefix length of an IPv6 network is 0 "
               "to 128, got '::/200'", "exempt: IPv6 length");
    load_fails("limits:\n  exempt: [mx.example.org]\n",
               "DIR/smtp.yaml:2: limits.exempt[0]: expected an address, ADDRESS/LENGTH or "
               "relay, got 'mx.example.org'", "exempt: a name");
    load_fails("limits:\n  counters: 10\n",
               "DIR/smtp.yaml:2: limits.counters: must be between 1024 and 16777216, got '10'",
               "counters too small");
    load_fails("log:\n  lvl: info\n",
               "DIR/smtp.yaml:2: unknown key 'log.lvl' (known: target, level)",
               "unknown key in log");
    load_fails("limits:\n  max_recipients: abc\n",
               "DIR/smtp.yaml:2: limits.max_recipients: expected a positive integer, got 'abc'",
               "wrong type");
    load_fails("limits:\n  max_recipients: -5\n",
               "DIR/smtp.yaml:2: limits.max_recipients: expected a positive integer, got '-5'",
               "negative integer");
    load_fails("limits:\n  max_connections_per_ip: x\n",
               "DIR/smtp.yaml:2: limits.max_connections_per_ip: expected a non-negative "
               "integer, got 'x'", "wrong type, zero allowed");
    load_fails("limits:\n  max_recipients: [1]\n",
               "DIR/smtp.yaml:2: limits.max_recipients: expected a positive integer, got a list",
               "list for an integer");
    load_fails("limits:\n  max_recipients:\n",
               "DIR/smtp.yaml:2: limits.max_recipients: expected a positive integer, got nothing",
               "null for an integer");
    load_fails("data: reject\n", "DIR/smtp.yaml:1: data: expected a map, got 'reject'",
               "scalar for a section");
    load_fails("- a\n- b\n", "DIR/smtp.yaml:1: expected a map of settings at the top level",
               "list at the top");
    load_fails("data:\n  bare_lf: maybe\n",
               "DIR/smtp.yaml:2: data.bare_lf: expected one of reject, accept, got 'maybe'",
               "bad word");
    load_fails("log:\n  level: loud\n",
               "DIR/smtp.yaml:2: log.level: expected one of error, warn, info, debug, got 'loud'",
               "bad log level");
    load_fails("limits:\n  max_line_length: 5\n",
               "DIR/smtp.yaml:2: limits.max_line_length: must be between 78 and 100000, got '5'",
               "out of range, low");
    load_fails("\n\nlimits:\n  max_recipients: 100001\n",
               "DIR/smtp.yaml:4: limits.max_recipients: must be between 1 and 100000, "
               "got '100001'", "out of range, high");
    load_fails("limits:\n  max_recipients: 0\n",
               "DIR/smtp.yaml:2: limits.max_recipients: must be between 1 and 100000, got '0'",
               "out of range, zero");
    load_fails("timeouts:\n  tls_handshake: 0\n",
               "DIR/smtp.yaml:2: timeouts.tls_handshake: must be more than 0 and at most 3600, "
               "got '0'", "tls_handshake 0");
    load_fails("timeouts:\n  close: 7200\n",
               "DIR/smtp.yaml:2: timeouts.close: must be more than 0 and at most 3600, "
               "got '7200'", "close too long");
    load_fails("timeouts:\n  min_data_rate: fast\n",
               "DIR/smtp.yaml:2: timeouts.min_data_rate: expected a non-negative integer, "
               "got 'fast'", "min_data_rate not a number");
    load_fails("limits:\n  max_junk_commands: -1\n",
               "DIR/smtp.yaml:2: limits.max_junk_commands: expected a non-negative integer, "
               "got '-1'", "max_junk_commands negative");
    load_fails("limits:\n  max_errors: 99999999999999999999999\n",
               "DIR/smtp.yaml:2: limits.max_errors: expected a positive integer, "
               "got '99999999999999999999999'", "integer overflow");
    load_fails("timeouts:\n  command: 0\n",
               "DIR/smtp.yaml:2: timeouts.command: must be more than 0 and at most 86400, "
               "got '0'", "zero timeout");
    load_fails("timeouts:\n  shutdown: 1e3\n",
               "DIR/smtp.yaml:2: timeouts.shutdown: expected a number of seconds, got '1e3'",
               "timeout in exponent form");
    load_fails("timeouts:\n  data_block: 1.\n",
               "DIR/smtp.yaml:2: timeouts.data_block: expected a number of seconds, got '1.'",
               "timeout with a bare dot");
    load_fails("hostname: a\nlimits: {}\nhostname: b\n",
               "DIR/smtp.yaml:3: duplicate key 'hostname'", "duplicate key at top");
    load_fails("limits:\n  max_errors: 1\n  max_errors: 2\n",
               "DIR/smtp.yaml:3: duplicate key 'max_errors'", "duplicate nested key");
    load_fails("hostname: &h mx.example.org\n",
               "DIR/smtp.yaml:1: anchors are not allowed", "anchor refused");
    load_fails("limits: &l\n  max_errors: 1\n",
               "DIR/smtp.yaml:1: anchors are not allowed", "anchor on a map refused");
    load_fails("x: &a 1\nhostname: *a\n",
               "DIR/smtp.yaml:1: anchors are not allowed", "anchor and alias refused");
    load_fails("hostname: a\nlimits: *nothing\n",
               "DIR/smtp.yaml:2: aliases are not allowed", "alias refused");
    load_fails("listen:\n  - *x\n", "DIR/smtp.yaml:2: aliases are not allowed",
               "alias in a list refused");
    load_fails("? [a, b]\n: 1\n", "DIR/smtp.yaml:1: map keys must be scalars",
               "list as a key refused");
    load_fails("hostname: a\n---\nhostname: b\n",
               "DIR/smtp.yaml:2: only one YAML document is allowed", "two documents");
    load_fails("hostname: \"bad host\"\n",
               "DIR/smtp.yaml:1: hostname: expected a host name, got 'bad host'", "bad hostname");
    load_fails("spool_dir: ''\n", "DIR/smtp.yaml:1: spool_dir: expected a directory, got ''",
               "empty spool_dir");
}

static void test_listen_errors(void)
{
    load_fails("listen:\n  - 127.0.0.1\n",
               "DIR/smtp.yaml:2: listen[0]: missing ':PORT' in '127.0.0.1'", "listen without port");
    load_fails("listen:\n  - 127.0.0.1:25\n  - ::1:25\n",
               "DIR/smtp.yaml:3: listen[1]: an IPv6 address needs brackets, as in "
               "'[::1]:2525': '::1:25'", "unbracketed IPv6");
    load_fails("listen:\n  - 127.0.0.1:70000\n",
               "DIR/smtp.yaml:2: listen[0]: bad port in '127.0.0.1:70000' (expected 0 to 65535)",
               "port out of range");
    load_fails("listen: 127.0.0.1:25\n",
               "DIR/smtp.yaml:1: listen: expected a list of addresses \"HOST:PORT\", "
               "got '127.0.0.1:25'", "listen not a list");
    load_fails("listen: []\n",
               "DIR/smtp.yaml:1: listen: expected a list of addresses \"HOST:PORT\", got a list",
               "empty listen list");
    load_fails("listen:\n  - address: 127.0.0.1:25\n    submision: yes\n",
               "DIR/smtp.yaml:3: unknown key 'listen[0].submision' (known: address, submission, tls, auth, auth_plaintext, proxy_protocol, proxy_from)",
               "listen map, unknown key");
    load_fails("listen:\n  - submission: yes\n",
               "DIR/smtp.yaml:2: listen[0]: missing key 'address'", "listen map without address");
    load_fails("listen:\n  - address: 127.0.0.1:25\n    submission: maybe\n",
               "DIR/smtp.yaml:3: listen[0].submission: expected true or false, got 'maybe'",
               "listen map, bad boolean");
    load_fails("listen:\n  - address: \"[::1]:x\"\n",
               "DIR/smtp.yaml:2: listen[0].address: bad port in '[::1]:x' (expected 0 to 65535)",
               "listen map, bad address");
}

/* PROXY listeners, xclient_from, timeouts.proxy_header */
static void test_proxy(void)
{
    struct kasi_config cfg;
    char err[512];
    unsigned char bal[16], other[16], xc[16];
    netmask_addr("10.0.0.5", bal);
    netmask_addr("10.1.0.5", other);
    netmask_addr("192.0.2.9", xc);
    is_int(load("listen:\n  - address: 127.0.0.1:25\n    proxy_protocol: v2\n"
                "    proxy_from: [10.0.0.0/24]\n  - 127.0.0.1:26\n"
                "timeouts:\n  proxy_header: 2.5\nxclient_from: [192.0.2.9]\n",
                NULL, &cfg, err, sizeof err), 0, "proxy: loads");
    is_int(cfg.listen[0].proxy_protocol, LISTEN_PROXY_V2, "proxy: v2 on the first listener");
    ok(netmask_list_match(&cfg.listen[0].proxy_from, bal) &&
       !netmask_list_match(&cfg.listen[0].proxy_from, other), "proxy: proxy_from");
    is_int(cfg.listen[1].proxy_protocol, LISTEN_PROXY_NONE, "proxy: none on the second");
    ok(cfg.timeout_proxy_header == 2.5, "proxy: timeouts.proxy_header");
    ok(netmask_list_match(&cfg.xclient_from, xc) && !netmask_list_match(&cfg.xclient_from, bal),
       "xclient_from");
    config_free(&cfg);
    is_int(load("", NULL, &cfg, err, sizeof err), 0, "proxy defaults: load");
    ok(cfg.timeout_proxy_header == 10 && cfg.xclient_from.n == 0,
       "proxy defaults: 10 s, nobody may send XCLIENT");
    config_free(&cfg);
    is_int(load("listen:\n  - {address: 127.0.0.1:25, proxy_protocol: any, proxy_from: [\"::1\"]}\n",
                NULL, &cfg, err, sizeof err), 0, "proxy any: loads");
    is_int(cfg.listen[0].proxy_protocol, LISTEN_PROXY_ANY, "proxy any");
    config_free(&cfg);
    load_fails("listen:\n  - address: 127.0.0.1:25\n    proxy_protocol: v3\n",
               "DIR/smtp.yaml:3: listen[0].proxy_protocol: expected one of v1, v2, any, got 'v3'",
               "proxy_protocol v3");
    load_fails("listen:\n  - address: 127.0.0.1:25\n    proxy_protocol: v1\n",
               "DIR/smtp.yaml:2: listen[0].proxy_from: proxy_protocol needs the networks of the "
               "balancers that send it", "proxy_protocol without proxy_from");
    load_fails("listen:\n  - address: 127.0.0.1:25\n    proxy_from: [10.0.0.1]\n",
               "DIR/smtp.yaml:2: listen[0].proxy_from: only with proxy_protocol",
               "proxy_from without proxy_protocol");
    load_fails("listen:\n  - address: 127.0.0.1:25\n    proxy_protocol: v2\n"
               "    proxy_from: [10.0.0.0/33]\n",
               "DIR/smtp.yaml:4: listen[0].proxy_from[0]: the prefix length of an IPv4 network is 0 to 32, got '10.0.0.0/33'",
               "proxy_from bad network");
    load_fails("xclient_from: 10.0.0.1\n",
               "DIR/smtp.yaml:1: xclient_from: expected a list of addresses or networks, got '10.0.0.1'",
               "xclient_from not a list");
    load_fails("timeouts:\n  proxy_header: 0\n",
               "DIR/smtp.yaml:2: timeouts.proxy_header: must be more than 0 and at most 3600, got '0'",
               "proxy_header 0");
}

static void test_me(void)
{
    struct kasi_config cfg;
    char err[512];
    is_int(load("hostname: yaml.example.org\n", "  mx.example.org \r\nsecond line\n",
                &cfg, err, sizeof err), 0, "me: loads");
    is_str(cfg.hostname, "mx.example.org", "me: overrides smtp.yaml, trimmed");
    config_free(&cfg);
    is_int(load(NULL, "me.example.net", &cfg, err, sizeof err), 0, "me without newline");
    is_str(cfg.hostname, "me.example.net", "me: host name without smtp.yaml");
    config_free(&cfg);
    is_int(load("hostname: yaml.example.org\n", NULL, &cfg, err, sizeof err), 0,
           "hostname from smtp.yaml");
    is_str(cfg.hostname, "yaml.example.org", "smtp.yaml hostname without me");
    config_free(&cfg);
    is_int(load(NULL, "bad host\n", &cfg, err, sizeof err), -1, "me: bad host refused");
    is_str(err, "DIR/me:1: expected a host name, got 'bad host'", "me: message");
    config_free(&cfg);
    is_int(load(NULL, "", &cfg, err, sizeof err), -1, "me: empty file refused");
    is_str(err, "DIR/me:1: expected a host name, got nothing", "me: empty message");
    config_free(&cfg);
    is_int(config_load("/nonexistent/kasi-config", &cfg, err, sizeof err), -1,
           "missing config dir refused");
    is_str(err, "/nonexistent/kasi-config: No such file or directory", "missing dir message");
    config_free(&cfg);
}

static void size_case(const char *text, long long want)
{
    struct kasi_config cfg;
    char yaml[128], err[512];
    snprintf(yaml, sizeof yaml, "limits:\n  max_message_size: %s\n", text);
    int rc = load(yaml, NULL, &cfg, err, sizeof err);
    if (want >= 0) {
        is_int(rc, 0, "size '%s' accepted", text);
        is_int(cfg.max_message_size, want, "size '%s' value", text);
    } else {
        is_int(rc, -1, "size '%s' refused", text);
        char msg[256];
        snprintf(msg, sizeof msg, "DIR/smtp.yaml:2: limits.max_message_size: expected a size "
                 "(bytes, or a number with K, M or G), got '%s'", text);
        is_str(err, msg, "size '%s' message", text);
    }
    config_free(&cfg);
}

static void test_sizes(void)
{
    size_case("0", 0);
    size_case("1024", 1024);
    size_case("512K", 512LL << 10);
    size_case("50M", 50LL << 20);
    size_case("1G", 1LL << 30);
    size_case("3g", 3LL << 30);
    size_case("5X", -1);
    size_case("5MB", -1);
    size_case("M", -1);
    size_case("1.5M", -1);
    size_case("99999999999999999G", -1);
    load_fails("limits:\n  memory_buffer: 2G\n",
               "DIR/smtp.yaml:2: limits.memory_buffer: must be between 1 and 1073741824, "
               "got '2G'", "memory_buffer too large");
}

static void listen_case(const char *s, const char *host, const char *port)
{
    char *h = (char *)"x", *p = (char *)"x", err[256] = "";
    int rc = config_parse_listen(s, &h, &p, err, sizeof err);
    if (host) {
        is_int(rc, 0, "listen '%s' parses", s);
        is_str(h, host, "listen '%s' host", s);
        is_str(p, port, "listen '%s' port", s);
    } else {
        is_int(rc, -1, "listen '%s' refused", s);
        ok(h == NULL && p == NULL && err[0], "listen '%s': %s", s, err);
    }
    free(h);
    free(p);
}

static void test_listen_parse(void)
{
    listen_case("127.0.0.1:2525", "127.0.0.1", "2525");
    listen_case("[::1]:2525", "::1", "2525");
    listen_case("[::]:0", "::", "0");
    listen_case("[fe80::1%eth0]:25", "fe80::1%eth0", "25");
    listen_case("localhost:0587", "localhost", "587");
    listen_case("0.0.0.0:65535", "0.0.0.0", "65535");
    listen_case("::1:25", NULL, NULL);
    listen_case("[::1]25", NULL, NULL);
    listen_case("[::1", NULL, NULL);
    listen_case("[]:25", NULL, NULL);
    listen_case("[1.2.3.4]:25", NULL, NULL);
    listen_case("127.0.0.1", NULL, NULL);
    listen_case(":25", NULL, NULL);
    listen_case("1.2.3.4:", NULL, NULL);
    listen_case("1.2.3.4:65536", NULL, NULL);
    listen_case("1.2.3.4:-1", NULL, NULL);
    listen_case("1.2.3.4:25x", NULL, NULL);
    listen_case("1.2.3.4:000025", NULL, NULL);
    listen_case("bad host:25", NULL, NULL);
}

static struct ynode *tree(const char *text, char *err, size_t errlen, char **dirp)
{
    *dirp = tdir_make();
    tdir_put(*dirp, "t.yaml", text);
    char path[512];
    snprintf(path, sizeof path, "%s/t.yaml", *dirp);
    return ytree_load_file(path, err, errlen);
}

static void test_tree(void)
{
    char err[512], *dir;
    struct ynode *t = tree("a: 1\nb:\n  - x\n  - 'q'\n  - {c: d}\nc: |\n  text\n",
                           err, sizeof err, &dir);
    ok(t && t->type == YNODE_MAP && t->n == 3, "tree: map of three");
    const struct ynode *b = ytree_get(t, "b");
    ok(b && b->type == YNODE_SEQ && b->n == 3 && b->line == 3, "tree: b is a list at line 3");
    if (b && b->n == 3) {
        is_str(b->items[0]->scalar, "x", "tree: list item");
        is_int(b->items[0]->quoted, 0, "tree: plain scalar");
        is_int(b->items[1]->quoted, 1, "tree: quoted scalar");
        is_int(b->items[2]->line, 5, "tree: flow map line");
        is_str(ytree_get(b->items[2], "c")->scalar, "d", "tree: nested flow map");
    }
    is_int(t ? t->key_lines[1] : 0, 2, "tree: key line");
    is_str(ytree_get(t, "c") ? ytree_get(t, "c")->scalar : NULL, "text\n", "tree: block scalar");
    ok(ytree_get(t, "zz") == NULL && ytree_get(b, "x") == NULL, "tree: get misses");
    ytree_free(t);
    tdir_remove(dir);

    t = tree("", err, sizeof err, &dir);
    ok(t && t->type == YNODE_MAP && t->n == 0, "tree: empty file is an empty map");
    ytree_free(t);
    tdir_remove(dir);

    t = tree("a: \"nul\\0byte\"\n", err, sizeof err, &dir);
    ok(t == NULL && strstr(err, "t.yaml:1: NUL character in a scalar"), "tree: NUL refused");
    tdir_remove(dir);

    char deep[400] = "";
    for (int i = 0; i < 100; i++)
        strcat(deep, "[");
    t = tree(deep, err, sizeof err, &dir);
    ok(t == NULL && strstr(err, "nesting deeper than 64 levels"), "tree: depth bounded");
    tdir_remove(dir);

    t = ytree_load_file("/nonexistent/t.yaml", err, sizeof err);
    ok(t == NULL, "tree: missing file");
    is_str(err, "/nonexistent/t.yaml: No such file or directory", "tree: missing file message");
    ytree_free(NULL);
}

/* ---- the table mechanism with another module's struct */

struct tsettings {
    unsigned tries;
    size_t cap;
    double wait;
};

static const struct cfg_key tkeys_sub[] = {
    CFG_FIELD(struct tsettings, "cap", cfg_set_size, cap, 1024, 1ULL << 30),
    { 0 }
};

static const struct cfg_key tkeys[] = {
    CFG_FIELD(struct tsettings, "tries", cfg_set_uint, tries, 1, 9),
    CFG_FIELD(struct tsettings, "wait", cfg_set_seconds, wait, 0, 60),
    CFG_SECTION("mem", tkeys_sub),
    { 0 }
};

/* Load yaml as DIR/t.yaml with tkeys; err without the directory. */
static int tload(const char *yaml, struct tsettings *t, char *err, size_t errlen)
{
    char *dir = tdir_make(), path[512], raw[512];
    snprintf(path, sizeof path, "%s/t.yaml", dir);
    if (yaml)
        tdir_put(dir, "t.yaml", yaml);
    *t = (struct tsettings){ .tries = 2, .cap = 4096, .wait = 1 };
    int rc = cfg_load_file(path, tkeys, t, raw, sizeof raw);
    size_t dl = strlen(dir);
    snprintf(err, errlen, "%s", strncmp(raw, dir, dl) ? raw : raw + dl + 1);
    tdir_remove(dir);
    return rc;
}

static void test_table(void)
{
    struct tsettings t;
    char err[512];
    is_int(tload(NULL, &t, err, sizeof err), 0, "table: missing file is fine");
    ok(t.tries == 2 && t.cap == 4096 && t.wait == 1, "table: missing file keeps defaults");
    is_int(tload("tries: 3\nwait: 2.5\nmem:\n  cap: 64K\n", &t, err, sizeof err), 0,
           "table: valid file");
    ok(t.tries == 3 && t.cap == 65536 && t.wait == 2.5, "table: fields set through offsets");
    is_int(tload("tries: 3\ntrys: 4\n", &t, err, sizeof err), -1, "table: unknown key");
    is_str(err, "t.yaml:2: unknown key 'trys' (known: tries, wait, mem)", "table: unknown key message");
    tload("mem:\n  cap: 1\n", &t, err, sizeof err);
    is_str(err, "t.yaml:2: mem.cap: must be between 1024 and 1073741824, got '1'",
           "table: range in a section");
    tload("wait: soon\n", &t, err, sizeof err);
    is_str(err, "t.yaml:1: wait: expected a number of seconds, got 'soon'", "table: seconds");
    tload("- 1\n", &t, err, sizeof err);
    is_str(err, "t.yaml:1: expected a map of settings at the top level", "table: top not a map");
}

int main(void)
{
    test_defaults();
    test_exempt_none();
    test_exempt_relay();
    test_full();
    test_shipped();
    test_errors();
    test_listen_errors();
    test_proxy();
    test_me();
    test_sizes();
    test_listen_parse();
    test_tree();
    test_table();
    return done_testing();
}
