/* Configuration, option engine, module loader (built-in fake modules, no
 * dlopen), hooks, IQ and disco registries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/core.h"
#include "core/options.h"

/* ---- fixtures ----------------------------------------------------------------- */

static char g_dir[64];
static char g_path[128];
static char g_err[1024];

static int setup_dir(void **state)
{
    snprintf(g_dir, sizeof(g_dir), "/tmp/xmppd-test-config-XXXXXX");
    assert_non_null(mkdtemp(g_dir));
    snprintf(g_path, sizeof(g_path), "%s/xmppd.json", g_dir);
    log_open(NULL, XMPPD_LOG_ERROR);
    return 0;
}

static int teardown_dir(void **state)
{
    unlink(g_path);
    rmdir(g_dir);
    return 0;
}

static xmppd_config *load_text(const char *text)
{
    FILE *f = fopen(g_path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
    g_err[0] = '\0';
    return config_read(g_path, g_err, sizeof(g_err));
}

/* Asserts that text is refused with exactly "PATH:<rest>". */
static void expect_error(const char *text, const char *rest)
{
    xmppd_config *cfg = load_text(text);
    char want[1024];
    snprintf(want, sizeof(want), "%s:%s", g_path, rest);
    if (cfg)
        fail_msg("accepted, expected %s", want);
    if (strcmp(g_err, want) != 0)
        fail_msg("got  \"%s\"\nwant \"%s\"", g_err, want);
}

#define HOSTS "\"hosts\": { \"example.org\": {} }"

/* ---- config errors ------------------------------------------------------------ */

static void test_bad_json(void **state)
{
    xmppd_config *cfg = load_text("{\n  \"hosts\": {\n    \"a\": {}\n  },\n  x\n}\n");
    assert_null(cfg);
    char want[256];
    snprintf(want, sizeof(want), "%s:5:", g_path);
    assert_true(strncmp(g_err, want, strlen(want)) == 0);
    assert_non_null(strstr(g_err, "invalid JSON"));

    cfg = load_text("{ " HOSTS ",\n \"storage\": \"a\",\n \"storage\": \"b\" }");
    assert_null(cfg);
    assert_non_null(strstr(g_err, "duplicate"));
}

static void test_unknown_key(void **state)
{
    expect_error("{\n" HOSTS ",\n \"limts\": {}\n}", "3: limts: unknown key (did you mean \"limits\"?)");
    expect_error("{\n" HOSTS ",\n \"limits\": {\n  \"max_dept\": 3 }\n}",
                 "4: limits.max_dept: unknown key (did you mean \"max_depth\"?)");
    expect_error("{\n" HOSTS ",\n \"frobnicate\": 1\n}", "3: frobnicate: unknown key");
    expect_error("{\n \"hosts\": {\n  \"example.org\": {\n   \"modulez\": {} } }\n}",
                 "4: hosts.example.org.modulez: unknown key (did you mean \"modules\"?)");
}

static void test_wrong_type_and_range(void **state)
{
    expect_error("{\n" HOSTS ",\n \"limits\": {\n  \"max_depth\": \"x\"\n }\n}",
                 "4: limits.max_depth: expected an integer from 1 to 1000, got \"x\"");
    expect_error("{\n" HOSTS ",\n \"limits\": { \"max_depth\": 5000 }\n}",
                 "3: limits.max_depth: expected an integer from 1 to 1000, got 5000");
    expect_error("{\n" HOSTS ",\n \"c2s\": { \"require_encryption\": \"yes\" }\n}",
                 "3: c2s.require_encryption: expected true or false, got \"yes\"");
    expect_error("{\n" HOSTS ",\n \"log\": { \"level\": \"loud\" }\n}",
                 "3: log.level: expected one of \"error\", \"warn\", \"info\", \"debug\", got \"loud\"");
    expect_error("{\n" HOSTS ",\n \"tls\": { \"min_version\": \"1.1\" }\n}",
                 "3: tls.min_version: expected one of \"1.2\", \"1.3\", got \"1.1\"");
    expect_error("{\n" HOSTS ",\n \"data_dir\": 5\n}",
                 "3: data_dir: expected a path (a non-empty string), got 5");
}

static void test_bad_duration_size(void **state)
{
    expect_error("{\n" HOSTS ",\n \"limits\": {\n  \"negotiation_timeout\": \"5 minutes\" }\n}",
                 "4: limits.negotiation_timeout: expected a duration from 1s to 1h, got \"5 minutes\"");
    expect_error("{\n" HOSTS ",\n \"limits\": {\n  \"max_stanza_size\": \"big\" }\n}",
                 "4: limits.max_stanza_size: expected a size from 10000 to 1G, got \"big\"");
    expect_error("{\n" HOSTS ",\n \"limits\": {\n  \"max_stanza_size\": \"2k\" }\n}",
                 "4: limits.max_stanza_size: expected a size from 10000 to 1G, got \"2k\"");
}

static void test_no_hosts(void **state)
{
    expect_error("{\n \"storage\": \"sqlite\"\n}",
                 " \"hosts\" is required: the domains served, at least one: \"hosts\": "
                 "{ \"example.org\": {} }");
    expect_error("{\n \"hosts\": {}\n}",
                 "2: hosts: at least one host is required, e.g. \"hosts\": { \"example.org\": {} }");
    expect_error("{\n \"hosts\": { \"Example.ORG\": {}, \"example.org\": {} }\n}",
                 "2: hosts.example.org: the same host as an earlier entry (both are example.org after "
                 "normalisation)");
    expect_error("{\n \"hosts\": {\n  \"bad host\": {} }\n}", "3: hosts.bad host: not a valid domain name");
}

static void test_bad_listener(void **state)
{
    expect_error("{\n" HOSTS ",\n \"listeners\": [\n  { \"type\": \"c2s\" },\n  { \"type\": \"c2x\" }\n ]\n}",
                 "5: listeners.1.type: expected one of \"c2s\", \"s2s\", \"component\", \"http\", got \"c2x\"");
    expect_error("{\n" HOSTS ",\n \"listeners\": [\n  { \"port\": 5222 }\n ]\n}",
                 "4: listeners.0: \"type\" is required: what connects here");
    expect_error("{\n" HOSTS ",\n \"listeners\": [\n  { \"type\": \"c2s\",\n    \"port\": 70000 } ]\n}",
                 "5: listeners.0.port: expected an integer from 1 to 65535, got 70000");
    expect_error("{\n" HOSTS ",\n \"listeners\": [ { \"type\": \"s2s\", \"tls\": \"maybe\" } ]\n}",
                 "3: listeners.0.tls: expected one of \"starttls\", \"direct\", \"none\", got \"maybe\"");
    expect_error("{\n" HOSTS ",\n \"listeners\": [ { \"type\": \"c2s\" },\n { \"type\": \"c2s\" } ]\n}",
                 "4: listeners.1: [::]:5222 is already used by listeners.0");
}

/* http listeners: HTTPS or plain, proxies as addresses or CIDRs, a prefix
 * that is a path; the kernel's endpoints need sane paths and URLs. */
static void test_http_listener(void **state)
{
    expect_error("{\n" HOSTS ",\n \"listeners\": [ { \"type\": \"http\", \"tls\": \"starttls\" } ]\n}",
                 "3: listeners.0.tls: HTTP has no STARTTLS: \"direct\" (HTTPS) or \"none\" (plain HTTP)");
    expect_error("{\n" HOSTS ",\n \"listeners\": [ { \"type\": \"c2s\", \"tls\": \"none\" } ]\n}",
                 "3: listeners.0.tls: \"none\" is only for http listeners (use \"starttls\" or \"direct\")");
    expect_error("{\n" HOSTS ",\n \"listeners\": [ { \"type\": \"http\",\n \"trusted_proxies\": [\"10.0.0.0/33\"] } ]\n}",
                 "4: listeners.0.trusted_proxies: expected IP addresses or CIDRs (\"10.0.0.0/8\"), got \"10.0.0.0/33\"");
    expect_error("{\n" HOSTS ",\n \"listeners\": [ { \"type\": \"http\",\n \"path_prefix\": \"/xmpp/\" } ]\n}",
                 "4: listeners.0.path_prefix: expected a path such as \"/xmpp\" (a leading '/', none at the end), got \"/xmpp/\"");
    expect_error("{\n" HOSTS ",\n \"http\": { \"websocket\": {\n \"see_other_uri\": \"http://x.example/\" } }\n}",
                 "4: http.websocket.see_other_uri: expected a ws:// or wss:// URI, got \"http://x.example/\"");
    xmppd_config *cfg = load_text("{ " HOSTS ",\n \"listeners\": [ { \"type\": \"http\" },\n"
                                  " { \"type\": \"http\", \"tls\": \"direct\" } ] }");
    assert_non_null(cfg);
    assert_int_equal(cfg->listeners[0].tls, LISTEN_TLS_NONE);
    assert_int_equal(cfg->listeners[0].port, 5280);
    assert_int_equal(cfg->listeners[1].port, 5281);
    assert_string_equal(cfg->http.websocket.path, "/xmpp-websocket");
    assert_string_equal(cfg->http.bosh.path, "/http-bind");
    config_free(cfg);
}

/* XEP-0114 components: "components": { domain: { secret, subdomains } }. A
 * secret never appears in a message, not even a wrong value. */
static void test_components(void **state)
{
    xmppd_config *cfg = load_text("{ " HOSTS ",\n \"components\": {\n"
                                  "  \"GW.Example.ORG\": { \"secret\": \"s1\" },\n"
                                  "  \"muc.example.org\": { \"secret\": \"s2\", \"subdomains\": true }\n } }");
    assert_non_null(cfg);
    assert_int_equal(cfg->n_components, 2);
    assert_string_equal(cfg->components[0].domain, "gw.example.org");
    assert_string_equal(cfg->components[0].secret, "s1");
    assert_false(cfg->components[0].subdomains);
    assert_string_equal(cfg->components[1].domain, "muc.example.org");
    assert_true(cfg->components[1].subdomains);
    config_free(cfg);

    expect_error("{ " HOSTS ",\n \"components\": [] }",
                 "2: components: expected an object, got []");
    expect_error("{ " HOSTS ",\n \"components\": {\n  \"gw.example.org\": {}\n } }",
                 "3: components.gw.example.org: \"secret\" is required: the shared secret the component "
                 "proves (XEP-0114 §3)");
    expect_error("{ " HOSTS ",\n \"components\": {\n  \"gw.example.org\": {\n"
                 "   \"secret\": 123456 } } }",
                 "4: components.gw.example.org.secret: expected a non-empty string (the value is "
                 "secret: not shown)");
    expect_error("{ " HOSTS ",\n \"components\": {\n  \"gw.example.org\": {\n"
                 "   \"secret\": \"a\", \"subdomain\": true } } }",
                 "4: components.gw.example.org.subdomain: unknown key (did you mean \"subdomains\"?)");
    expect_error("{ " HOSTS ",\n \"components\": {\n  \"gw.example.org\": {\n"
                 "   \"secret\": \"a\",\n   \"subdomains\": \"yes\" } } }",
                 "5: components.gw.example.org.subdomains: expected true or false, got \"yes\"");
    expect_error("{ " HOSTS ",\n \"components\": {\n  \"Example.org\": { \"secret\": \"a\" } } }",
                 "3: components.Example.org: example.org is also under \"hosts\": a domain is "
                 "either a host or a component");
    expect_error("{ " HOSTS ",\n \"components\": {\n  \"a@b\": { \"secret\": \"a\" } } }",
                 "3: components.a@b: not a valid domain name");
    expect_error("{ " HOSTS ",\n \"components\": {\n  \"gw.example.org\": { \"secret\": \"a\" },\n"
                 "  \"GW.example.org\": { \"secret\": \"b\" } } }",
                 "4: components.GW.example.org: the same component as an earlier entry (both are "
                 "gw.example.org after normalisation)");
    expect_error("{\n" HOSTS ",\n \"listeners\": [ { \"type\": \"component\", \"tls\": \"direct\" } ]\n}",
                 "3: listeners.0.tls: component listeners (XEP-0114) have no TLS; remove \"tls\" "
                 "and bind them to a loopback or private address");
}

static void test_defaults(void **state)
{
    xmppd_config *cfg = load_text("{ \"hosts\": { \"Example.ORG\": {} } }");
    assert_non_null(cfg);
    assert_int_equal(cfg->log.level, XMPPD_LOG_INFO);
    assert_null(cfg->log.file);
    assert_string_equal(cfg->storage, "sqlite");
    assert_true(cfg->c2s.require_encryption);
    char *real = realpath(g_dir, NULL);
    assert_string_equal(cfg->dir, real);
    /* state lives in the system's state folder, not next to the file */
    assert_string_equal(cfg->data_dir, XMPPD_DATA_DIR);
    free(real);
    assert_string_equal(cfg->module_path[0], XMPPD_MODULE_DIR);
    assert_null(cfg->module_path[1]);
    assert_int_equal(cfg->limits.max_stanza_size, 256 * 1024);
    assert_int_equal(cfg->limits.max_depth, 64);
    assert_int_equal(cfg->limits.negotiation_timeout, 30000);
    assert_int_equal(cfg->limits.connections_per_ip, 20);
    assert_int_equal(cfg->limits.auth_attempts, 5);
    assert_int_equal(cfg->limits.auth_failure_delay, 1000);
    assert_int_equal(cfg->limits.max_resources, 10);
    assert_int_equal(cfg->limits.max_send_buffer, 1024 * 1024);
    assert_int_equal(cfg->n_listeners, 1);
    assert_int_equal(cfg->listeners[0].type, LISTEN_C2S);
    assert_int_equal(cfg->listeners[0].port, 5222);
    assert_string_equal(cfg->listeners[0].address, "::");
    assert_int_equal(cfg->n_hosts, 1);
    assert_string_equal(cfg->hosts[0].name, "example.org");
    assert_null(cfg->global_modules);
    config_free(cfg);
}

/* JSON with comments: // to the end of the line and block comments,
 * outside strings only; lines in messages still count from the file. */
static void test_comments(void **state)
{
    xmppd_config *cfg = load_text(
        "// the default configuration\n"
        "{\n"
        "  /* a block\n"
        "     over two lines */\n"
        "  \"log\": { \"file\": \"/var//log/*x*/.log\" }, // a comment after a value\n"
        "  " HOSTS "\n"
        "}\n");
    assert_non_null(cfg);
    assert_string_equal(cfg->log.file, "/var//log/*x*/.log");
    config_free(cfg);
    expect_error("{\n// one\n/* two\n three */\n \"limits\": { \"max_depth\": 0 },\n " HOSTS "\n}",
                 "5: limits.max_depth: expected an integer from 1 to 1000, got 0");
}

static void test_values_and_lines(void **state)
{
    xmppd_config *cfg = load_text(
        "{\n"
        " \"log\": { \"level\": \"debug\", \"file\": \"logs/x.log\" },\n"
        " \"data_dir\": \"data\",\n"
        " \"module_path\": \"mods\",\n"
        " \"limits\": { \"max_stanza_size\": \"64k\", \"negotiation_timeout\": \"5m\",\n"
        "   \"auth_failure_delay\": \"250ms\", \"max_send_buffer\": \"10M\" },\n"
        " \"listeners\": [ { \"type\": \"c2s\", \"tls\": \"direct\" },\n"
        "                { \"type\": \"s2s\", \"address\": \"127.0.0.1\" } ],\n"
        " \"modules\": { \"roster\": { \"max\": 5 } },\n"
        " \"hosts\": {\n"
        "  \"example.org\": {\n"
        "   \"modules\": { \"roster\": false, \"x\\u0061\": true } } }\n"
        "}\n");
    assert_non_null(cfg);
    assert_int_equal(cfg->log.level, XMPPD_LOG_DEBUG);
    char want[256];
    snprintf(want, sizeof(want), "%s/logs/x.log", cfg->dir);
    assert_string_equal(cfg->log.file, want);
    snprintf(want, sizeof(want), "%s/mods", cfg->dir);
    assert_string_equal(cfg->module_path[0], want);
    assert_int_equal(cfg->limits.max_stanza_size, 65536);
    assert_int_equal(cfg->limits.negotiation_timeout, 300000);
    assert_int_equal(cfg->limits.auth_failure_delay, 250);
    assert_int_equal(cfg->limits.max_send_buffer, 10 * 1024 * 1024);
    assert_int_equal(cfg->listeners[0].port, 5223);
    assert_int_equal(cfg->listeners[0].tls, LISTEN_TLS_DIRECT);
    assert_int_equal(cfg->listeners[1].port, 5269);
    assert_string_equal(cfg->listeners[1].address, "127.0.0.1");

    assert_int_equal(config_line(cfg, "log.file"), 2);
    assert_int_equal(config_line(cfg, "limits.auth_failure_delay"), 6);
    assert_int_equal(config_line(cfg, "listeners.1.address"), 8);
    assert_int_equal(config_line(cfg, "listeners.1"), 8);
    assert_int_equal(config_line(cfg, "modules.roster.max"), 9);
    assert_int_equal(config_line(cfg, "hosts.example.org"), 11);
    assert_int_equal(config_line(cfg, "hosts.example.org.modules.xa"), 12);
    assert_int_equal(config_line(cfg, "hosts.nope"), 0);
    config_free(cfg);
}

static void test_parsers(void **state)
{
    const char *why;
    long long v;
    json_t *j = json_string("250ms");
    assert_int_equal(opt_parse_duration(j, &v, &why), 0);
    assert_int_equal(v, 250);
    json_decref(j);
    j = json_integer(30);
    assert_int_equal(opt_parse_duration(j, &v, &why), 0);
    assert_int_equal(v, 30000);
    json_decref(j);
    j = json_string("1h");
    assert_int_equal(opt_parse_duration(j, &v, &why), 0);
    assert_int_equal(v, 3600000);
    json_decref(j);
    j = json_string("10");
    assert_int_equal(opt_parse_duration(j, &v, &why), 0);
    assert_int_equal(v, 10000);
    json_decref(j);
    j = json_string("-5s");
    assert_int_equal(opt_parse_duration(j, &v, &why), -1);
    json_decref(j);
    j = json_string("10M");
    assert_int_equal(opt_parse_size(j, &v, &why), 0);
    assert_int_equal(v, 10 * 1024 * 1024);
    json_decref(j);
    j = json_string("64kB");
    assert_int_equal(opt_parse_size(j, &v, &why), 0);
    assert_int_equal(v, 65536);
    json_decref(j);
    j = json_string("12x");
    assert_int_equal(opt_parse_size(j, &v, &why), -1);
    json_decref(j);
}

/* ---- option engine -------------------------------------------------------------- */

typedef struct fake_conf {
    bool flag;
    long long n, dur, size;
    const char *s, *color;
    const char *const *list;
    const char *path;
    json_t *j;
    const char *secret;
} fake_conf;

static const char *const colors[] = { "red", "green", NULL };

static const xmppd_option fake_options[] = {
    { "flag", XMPPD_OPT_BOOL, XMPPD_OFF(fake_conf, flag), "true", .doc = "a switch" },
    { "n", XMPPD_OPT_INT, XMPPD_OFF(fake_conf, n), "42", 1, 100, .doc = "a number" },
    { "dur", XMPPD_OPT_DURATION, XMPPD_OFF(fake_conf, dur), "30s", 1000, 3600000, .doc = "a delay" },
    { "size", XMPPD_OPT_SIZE, XMPPD_OFF(fake_conf, size), "64k", .doc = "a size" },
    { "s", XMPPD_OPT_STRING, XMPPD_OFF(fake_conf, s), NULL, .doc = "a | string" },
    { "color", XMPPD_OPT_ENUM, XMPPD_OFF(fake_conf, color), "red", .choices = colors, .doc = "a color" },
    { "list", XMPPD_OPT_LIST, XMPPD_OFF(fake_conf, list), "[\"a\",\"b\"]", .doc = "names" },
    { "path", XMPPD_OPT_PATH, XMPPD_OFF(fake_conf, path), "data.db", .doc = "a file" },
    { "j", XMPPD_OPT_JSON, XMPPD_OFF(fake_conf, j), "{\"k\":1}", .doc = "anything" },
    { "secret", XMPPD_OPT_STRING, XMPPD_OFF(fake_conf, secret), "hunter2", .flags = XMPPD_OPT_SECRET,
      .doc = "a password" },
    { NULL }
};

static const xmppd_option required_options[] = {
    { "token", XMPPD_OPT_STRING, 0, NULL, .flags = XMPPD_OPT_REQUIRED | XMPPD_OPT_SECRET, .doc = "API token" },
    { NULL }
};

static const xmppd_module_def fake_def = {
    XMPPD_MODULE_HEAD("fake"), .version = "1.0",
    .summary = "test module", .options = fake_options, .conf_size = sizeof(fake_conf),
};
static const xmppd_module_def required_def = {
    XMPPD_MODULE_HEAD("needy"), .version = "1.0",
    .options = required_options, .conf_size = sizeof(const char *),
};

/* options_parse of a module's table with the errors joined into g_err. */
static void *parse_def(const xmppd_module_def *def, const json_t *given, const opt_ctx *ctx)
{
    opt_errors errs = { 0 };
    void *c = options_parse(def->options, def->conf_size, given, ctx, false, &errs);
    opt_errors_join(&errs, g_err, sizeof(g_err));
    opt_errors_free(&errs);
    return c;
}

static int check_modules(const xmppd_config *cfg)
{
    opt_errors errs = { 0 };
    int rc = modules_check(cfg, &errs, NULL);
    opt_errors_join(&errs, g_err, sizeof(g_err));
    opt_errors_free(&errs);
    return rc;
}

static void test_options_defaults(void **state)
{
    opt_ctx ctx = { NULL, "modules.fake", .owner = "module fake" };
    fake_conf *c = parse_def(&fake_def, NULL, &ctx);
    assert_non_null(c);
    assert_true(c->flag);
    assert_int_equal(c->n, 42);
    assert_int_equal(c->dur, 30000);
    assert_int_equal(c->size, 65536);
    assert_null(c->s);
    assert_string_equal(c->color, "red");
    assert_string_equal(c->list[0], "a");
    assert_string_equal(c->list[1], "b");
    assert_null(c->list[2]);
    assert_string_equal(c->path, "data.db");
    assert_int_equal(json_integer_value(json_object_get(c->j, "k")), 1);
    assert_string_equal(c->secret, "hunter2");
    options_conf_free(c);
}

static void test_options_values(void **state)
{
    xmppd_config *cfg = load_text(
        "{ \"hosts\": { \"example.org\": {} },\n"
        "  \"modules\": { \"fake\": { \"flag\": false, \"n\": 7, \"dur\": \"5m\", \"size\": \"1M\",\n"
        "    \"s\": \"hi\", \"color\": \"green\", \"list\": \"only\", \"path\": \"sub/f\",\n"
        "    \"j\": [1, 2] } } }");
    assert_non_null(cfg);
    opt_ctx ctx = { cfg, "modules.fake", .owner = "module fake" };
    fake_conf *c = parse_def(&fake_def, json_object_get(cfg->global_modules, "fake"), &ctx);
    assert_non_null(c);
    assert_false(c->flag);
    assert_int_equal(c->n, 7);
    assert_int_equal(c->dur, 300000);
    assert_int_equal(c->size, 1024 * 1024);
    assert_string_equal(c->s, "hi");
    assert_string_equal(c->color, "green");
    assert_string_equal(c->list[0], "only");
    assert_null(c->list[1]);
    char want[256];
    snprintf(want, sizeof(want), "%s/sub/f", cfg->dir);
    assert_string_equal(c->path, want);
    assert_true(json_is_array(c->j));
    config_free(cfg); /* the conf block owns copies: still valid */
    assert_string_equal(c->s, "hi");
    assert_int_equal(json_array_size(c->j), 2);
    options_conf_free(c);
}

static void expect_option_error(const char *mods, const char *rest)
{
    char text[1024];
    snprintf(text, sizeof(text), "{ \"hosts\": { \"example.org\": {} },\n \"modules\": {\n%s } }", mods);
    xmppd_config *cfg = load_text(text);
    assert_non_null(cfg);
    const char *name = strstr(mods, "needy") ? "needy" : "fake";
    const xmppd_module_def *def = strcmp(name, "needy") == 0 ? &required_def : &fake_def;
    char key[64];
    snprintf(key, sizeof(key), "modules.%s", name);
    char owner[64];
    snprintf(owner, sizeof(owner), "module %s", name);
    opt_ctx ctx = { cfg, key, .owner = owner };
    void *c = parse_def(def, json_object_get(cfg->global_modules, name), &ctx);
    char want[1024];
    snprintf(want, sizeof(want), "%s:%s", g_path, rest);
    if (c)
        fail_msg("accepted, expected %s", want);
    if (strcmp(g_err, want) != 0)
        fail_msg("got  \"%s\"\nwant \"%s\"", g_err, want);
    config_free(cfg);
}

static void test_options_errors(void **state)
{
    expect_option_error("  \"fake\": {\n   \"n\": 1000 }",
                        "4: modules.fake.n: expected an integer from 1 to 100, got 1000");
    expect_option_error("  \"fake\": {\n   \"n\": \"7\" }",
                        "4: modules.fake.n: expected an integer from 1 to 100, got \"7\"");
    expect_option_error("  \"fake\": {\n   \"flag\": 1 }",
                        "4: modules.fake.flag: expected true or false, got 1");
    expect_option_error("  \"fake\": {\n   \"dur\": \"2h\" }",
                        "4: modules.fake.dur: expected a duration from 1s to 1h, got \"2h\"");
    expect_option_error("  \"fake\": {\n   \"size\": \"lots\" }",
                        "4: modules.fake.size: expected a size such as 65536, \"64k\", \"10M\" or \"1G\", "
                        "got \"lots\"");
    expect_option_error("  \"fake\": {\n   \"color\": \"blue\" }",
                        "4: modules.fake.color: expected one of \"red\", \"green\", got \"blue\"");
    expect_option_error("  \"fake\": {\n   \"list\": [1] }",
                        "4: modules.fake.list: expected a string or a list of strings, got [1]");
    expect_option_error("  \"fake\": {\n   \"colour\": \"red\" }",
                        "4: modules.fake.colour: unknown option of module fake (did you mean \"color\"?)");
    expect_option_error("  \"fake\": {\n   \"zzzzzz\": 1 }",
                        "4: modules.fake.zzzzzz: unknown option of module fake (see `xmppctl options`)");
    expect_option_error("  \"fake\": {\n   \"secret\": 5 }",
                        "4: modules.fake.secret: expected a string (the value is secret: not shown)");
    expect_option_error("  \"needy\": {}",
                        "3: modules.needy: option \"token\" of module needy is required: API token");
}

static void test_options_bad_default(void **state)
{
    static const xmppd_option bad[] = { { "n", XMPPD_OPT_INT, 0, "many" }, { NULL } };
    xmppd_module_def def = fake_def;
    def.options = bad;
    def.conf_size = sizeof(long long);
    opt_ctx ctx = { NULL, "modules.fake", .owner = "module fake" };
    assert_null(parse_def(&def, NULL, &ctx));
    assert_non_null(strstr(g_err, "bug: invalid default"));
    def.conf_size = 4;
    assert_null(parse_def(&def, NULL, &ctx));
    assert_non_null(strstr(g_err, "outside its struct"));
}

static int noop_load(xmppd_module *m, const void *conf)
{
    return 0;
}

/* Nested options (SECTION, ARRAY, MAP), for modules as for the kernel. */
typedef struct svc { const char *name; const char *host; long long port; } svc;
typedef struct nested_conf {
    struct { bool on; long long n; } sect;
    xmppd_opt_array list;
    xmppd_opt_array map;
    int level;
} nested_conf;

static const char *const nest_levels[] = { "low", "high", NULL };
static const xmppd_option sect_fields[] = {
    { "on", XMPPD_OPT_BOOL, 0, "true" },
    { "n", XMPPD_OPT_INT, sizeof(long long), "3", 1, 9 },
    { NULL }
};
static const xmppd_option svc_fields[] = {
    { "host", XMPPD_OPT_STRING, offsetof(svc, host), NULL, .min = 1, .flags = XMPPD_OPT_REQUIRED },
    { "port", XMPPD_OPT_INT, offsetof(svc, port), "3478", 1, 65535 },
    { NULL }
};
static const xmppd_option nested_options[] = {
    { "sect", XMPPD_OPT_SECTION, offsetof(nested_conf, sect), .fields = sect_fields },
    { "list", XMPPD_OPT_ARRAY, offsetof(nested_conf, list), "[]", .fields = svc_fields,
      .item_size = sizeof(svc) },
    { "map", XMPPD_OPT_MAP, offsetof(nested_conf, map), NULL, .fields = svc_fields,
      .item_size = sizeof(svc) },
    { "level", XMPPD_OPT_ENUM, offsetof(nested_conf, level), "high", .choices = nest_levels,
      .flags = XMPPD_OPT_INDEX },
    { NULL }
};
static const xmppd_module_def nested_def = {
    XMPPD_MODULE_HEAD("nested"), .version = "1", .options = nested_options,
    .conf_size = sizeof(nested_conf), .load = noop_load,
};

static void test_options_nested(void **state)
{
    _Static_assert(offsetof(svc, name) == 0, "map items begin with their key");
    json_t *given = json_loads("{ \"sect\": { \"n\": 7 },"
                               "  \"list\": [ { \"host\": \"a\" }, { \"host\": \"b\", \"port\": 1 } ],"
                               "  \"map\": { \"turn\": { \"host\": \"t\" } } }", 0, NULL);
    opt_ctx ctx = { NULL, "modules.nested", .owner = "module nested" };
    nested_conf *c = parse_def(&nested_def, given, &ctx);
    assert_non_null(c);
    assert_true(c->sect.on);
    assert_int_equal(c->sect.n, 7);
    assert_int_equal(c->list.n, 2);
    const svc *l = c->list.items;
    assert_string_equal(l[0].host, "a");
    assert_int_equal(l[0].port, 3478);
    assert_int_equal(l[1].port, 1);
    assert_int_equal(c->map.n, 1);
    const svc *m = c->map.items;
    assert_string_equal(m[0].name, "turn");
    assert_string_equal(m[0].host, "t");
    assert_int_equal(c->level, 1);
    json_decref(given); /* the block keeps its own copy */
    assert_string_equal(l[1].host, "b");
    options_conf_free(c);

    /* Every error of the table at once, each with its dotted key. */
    given = json_loads("{ \"sect\": { \"n\": 70, \"of\": true },"
                       "  \"list\": [ { \"port\": 2 }, 5 ],"
                       "  \"map\": { \"x\": { \"host\": \"\" } }, \"level\": \"mid\" }", 0, NULL);
    assert_null(parse_def(&nested_def, given, &ctx));
    assert_string_equal(g_err,
        "modules.nested.sect.of: unknown option of module nested (did you mean \"on\"?)\n"
        "modules.nested.sect.n: expected an integer from 1 to 9, got 70\n"
        "modules.nested.list.0: option \"host\" of module nested is required\n"
        "modules.nested.list.1: expected an object, got 5\n"
        "modules.nested.map.x.host: expected a non-empty string, got \"\"\n"
        "modules.nested.level: expected one of \"low\", \"high\", got \"mid\"");
    json_decref(given);

    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    options_print("nested", "1", NULL, nested_options, true, f);
    fclose(f);
    assert_non_null(strstr(buf, "| `sect.n` | int | `3` | 1..9 |"));
    assert_non_null(strstr(buf, "| `list[].host` | string | (required) | non-empty | required |"));
    assert_non_null(strstr(buf, "| `map.<name>.port` | int | `3478` |"));
    free(buf);
}

/* The whole file is checked: every error is reported, each on its line. */
static void test_every_error(void **state)
{
    load_text("{\n" HOSTS ",\n"
              " \"limits\": { \"max_depth\": 0 },\n"
              " \"listeners\": [ { \"type\": \"c2x\" }, { \"type\": \"s2s\", \"port\": 0 } ],\n"
              " \"tls\": { \"cert\": \"/nonexistent.pem\" },\n"
              " \"s2s\": { \"routes\": { \"a.example\": \"host:0\" } }\n}");
    char want[2048];
    snprintf(want, sizeof(want),
             "%1$s:3: limits.max_depth: expected an integer from 1 to 1000, got 0\n"
             "%1$s:4: listeners.0.type: expected one of \"c2s\", \"s2s\", \"component\", \"http\", got \"c2x\"\n"
             "%1$s:4: listeners.1.port: expected an integer from 1 to 65535, got 0\n"
             "%1$s:5: tls.cert: a certificate needs its private key: add \"key\" next to it\n"
             "%1$s:5: tls.cert: cannot read /nonexistent.pem: No such file or directory\n"
             "%1$s:6: s2s.routes.a.example: expected \"host:port\" (or \"[ipv6]:port\"), got \"host:0\"",
             g_path);
    assert_string_equal(g_err, want);
}

static void test_options_print(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    options_print(fake_def.name, fake_def.version, fake_def.summary, fake_def.options, true, f);
    options_print(required_def.name, required_def.version, required_def.summary, required_def.options,
                  false, f);
    fclose(f);
    assert_non_null(strstr(buf, "| name | type | default | range/choices | flags | doc |"));
    assert_non_null(strstr(buf, "| `n` | int | `42` | 1..100 |  | a number |"));
    assert_non_null(strstr(buf, "| `dur` | duration | `30s` | 1s..1h |"));
    assert_non_null(strstr(buf, "red\\|green"));
    assert_non_null(strstr(buf, "a \\| string"));
    assert_non_null(strstr(buf, "(secret)"));
    assert_null(strstr(buf, "hunter2"));
    assert_non_null(strstr(buf, "(required)"));
    free(buf);
}

/* ---- loader, hooks, IQ, disco (built-in fake modules) ----------------------------- */

static char g_trace[512];

static void trace(const char *s)
{
    size_t n = strlen(g_trace);
    snprintf(g_trace + n, sizeof(g_trace) - n, "%s%s", n ? "," : "", s);
}

/* ud is a tag; a leading '!' makes the handler return HANDLED, '#' FAIL. */
static int on_event(xmppd_event *ev, void *ud)
{
    const char *tag = ud;
    trace(tag);
    return tag[0] == '!' ? XMPPD_HANDLED : tag[0] == '#' ? XMPPD_FAIL : XMPPD_PASS;
}

static int on_iq(xmppd_event *ev, void *ud)
{
    trace(ud);
    return XMPPD_HANDLED;
}

static void trace_load(xmppd_module *m)
{
    char s[128];
    xmppd_host *h = xmppd_module_host(m);
    snprintf(s, sizeof(s), "%s@%s", xmppd_module_name(m), h ? xmppd_host_name(h) : "*");
    trace(s);
}

static int base_load(xmppd_module *m, const void *conf)
{
    trace_load(m);
    if (xmppd_hook(m, "ev", on_event, 0, "G0") < 0 || xmppd_disco_feature(m, "urn:base") < 0 ||
        xmppd_disco_identity(m, "server", "im", "xmppd") < 0)
        return -1;
    return 0;
}

static int alpha_load(xmppd_module *m, const void *conf)
{
    trace_load(m);
    if (xmppd_hook(m, "ev", on_event, 10, "A10") < 0 || xmppd_hook(m, "ev", on_event, 0, "A0") < 0 ||
        xmppd_iq_handle(m, "get", "urn:xmpp:ping", XMPPD_IQ_HOST, on_iq, "ping") < 0 ||
        xmppd_disco_feature(m, "urn:xmpp:ping") < 0 || xmppd_disco_feature(m, "urn:base") < 0)
        return -1;
    return 0;
}

static int beta_load(xmppd_module *m, const void *conf)
{
    trace_load(m);
    if (xmppd_hook(m, "ev", on_event, 0, "B0") < 0 || xmppd_hook(m, "ev", on_event, 10, "B10") < 0)
        return -1;
    return 0;
}

static int broken_load(xmppd_module *m, const void *conf)
{
    xmppd_hook(m, "ev", on_event, 0, "BROKEN");
    return xmppd_module_refuse(m, "no %s today", "luck");
}


static int dup_load(xmppd_module *m, const void *conf)
{
    return xmppd_iq_handle(m, "get", "urn:xmpp:ping", XMPPD_IQ_HOST | XMPPD_IQ_BARE, on_iq, "dup");
}

static int g_ready;
static void count_ready(xmppd_module *m)
{
    g_ready++;
}

static int killer_fire(xmppd_event *ev, void *ud)
{
    trace("K");
    char err[256];
    module_unload_one("beta", ev->host, err, sizeof(err)); /* cascades to alpha */
    return XMPPD_PASS;
}

static int killer_load(xmppd_module *m, const void *conf)
{
    return xmppd_hook(m, "ev", killer_fire, 20, NULL);
}

static int fake_load(xmppd_module *m, const void *conf)
{
    const fake_conf *c = conf;
    char s[64];
    snprintf(s, sizeof(s), "fake:n=%lld", c->n);
    trace(s);
    return xmppd_iq_handle(m, "set", "urn:fake", XMPPD_IQ_HOST, on_iq, "fake-iq");
}

#define DEF(n, ...) \
    static const xmppd_module_def def_##n = { XMPPD_MODULE_HEAD(#n), .version = "1", __VA_ARGS__ }
DEF(base, .flags = XMPPD_MOD_GLOBAL, .load = base_load, .ready = count_ready);
DEF(alpha, .depends = (const char *const[]){ "beta", "base", NULL }, .load = alpha_load,
    .ready = count_ready);
DEF(beta, .load = beta_load, .ready = count_ready);
DEF(broken, .load = broken_load);
DEF(dup, .load = dup_load);
DEF(killer, .load = killer_load);
DEF(c1, .depends = (const char *const[]){ "c2", NULL }, .load = noop_load);
DEF(c2, .depends = (const char *const[]){ "c1", NULL }, .load = noop_load);
DEF(needy, .options = required_options, .conf_size = sizeof(const char *), .load = noop_load);
static const xmppd_module_def def_fake2 = {
    XMPPD_MODULE_HEAD("fake"), .version = "1.0",
    .options = fake_options, .conf_size = sizeof(fake_conf), .load = fake_load,
};

static int setup_loader(void **state)
{
    static bool done;
    setup_dir(state);
    if (!done) {
        const xmppd_module_def *defs[] = { &def_base, &def_alpha, &def_beta, &def_broken, &def_dup,
                                           &def_killer, &def_c1, &def_c2, &def_needy, &def_fake2 };
        for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++)
            assert_int_equal(modules_add_builtin(defs[i]), 0);
        done = true;
    }
    return 0;
}

static xmppd_config *start_text(const char *text, int want_rc)
{
    xmppd_config *cfg = load_text(text);
    if (!cfg)
        fail_msg("config refused: %s", g_err);
    g_trace[0] = '\0';
    g_ready = 0;
    int rc = modules_start(cfg, g_err, sizeof(g_err));
    if (rc != want_rc)
        fail_msg("modules_start returned %d (%s)", rc, g_err);
    if (rc < 0) {
        config_free(cfg);
        return NULL;
    }
    return cfg;
}

static void stop(xmppd_config *cfg)
{
    modules_stop();
    config_free(cfg);
}

static const char *fire_trace(xmppd_host *h, const char *event, int *rc_r)
{
    g_trace[0] = '\0';
    xmppd_event ev = { .name = event, .host = h };
    int rc = xmppd_fire(&ev);
    if (rc_r)
        *rc_r = rc;
    return g_trace;
}

static const char *const LOADER_CONFIG =
    "{ \"modules\": { \"alpha\": {}, \"base\": true, \"beta\": {} },\n"
    "  \"hosts\": { \"a.example\": {},\n"
    "             \"b.example\": { \"modules\": { \"alpha\": false } } } }";

static void test_loader_order(void **state)
{
    xmppd_config *cfg = start_text(LOADER_CONFIG, 0);
    assert_string_equal(g_trace, "base@*,beta@a.example,alpha@a.example,beta@b.example");
    assert_int_equal(g_ready, 4);
    xmppd_host *a = xmppd_host_find("a.example"), *b = xmppd_host_find("b.example");
    assert_non_null(a);
    assert_non_null(b);
    assert_true(xmppd_host_has_module(a, "alpha"));
    assert_false(xmppd_host_has_module(b, "alpha"));
    assert_true(xmppd_host_has_module(NULL, "base"));
    assert_false(xmppd_host_has_module(a, "base"));
    stop(cfg);
}

static void test_hook_priority_and_ties(void **state)
{
    xmppd_config *cfg = start_text(LOADER_CONFIG, 0);
    xmppd_host *a = xmppd_host_find("a.example"), *b = xmppd_host_find("b.example");
    int rc;
    /* Priority first; equal priorities in load order (global base first,
     * then beta, which alpha depends on), global and host interleaved. */
    assert_string_equal(fire_trace(a, "ev", &rc), "B10,A10,G0,B0,A0");
    assert_int_equal(rc, XMPPD_PASS);
    assert_string_equal(fire_trace(b, "ev", &rc), "B10,G0,B0");
    assert_string_equal(fire_trace(NULL, "ev", &rc), "G0");
    assert_string_equal(fire_trace(a, "no-such-event", &rc), "");
    assert_int_equal(rc, XMPPD_PASS);
    stop(cfg);
}

static void test_hook_handled_fail_all(void **state)
{
    xmppd_config *cfg = start_text(LOADER_CONFIG, 0);
    xmppd_host *a = xmppd_host_find("a.example");
    xmppd_module *alpha = a->modules[1];
    assert_string_equal(xmppd_module_name(alpha), "alpha");
    assert_int_equal(xmppd_hook(alpha, "ev", on_event, 5, "!H5"), 0);
    int rc;
    assert_string_equal(fire_trace(a, "ev", &rc), "B10,A10,!H5");
    assert_int_equal(rc, XMPPD_HANDLED);

    g_trace[0] = '\0';
    xmppd_event ev = { .name = "ev", .host = a };
    xmppd_fire_all(&ev);
    assert_string_equal(g_trace, "B10,A10,!H5,G0,B0,A0");

    assert_int_equal(xmppd_hook(alpha, "ev2", on_event, 0, "#F"), 0);
    assert_int_equal(xmppd_hook(alpha, "ev2", on_event, -1, "after"), 0);
    assert_string_equal(fire_trace(a, "ev2", &rc), "#F");
    assert_int_equal(rc, XMPPD_FAIL);

    g_trace[0] = '\0';
    xmppd_notify(a, "ev2", NULL, NULL);
    assert_string_equal(g_trace, "#F,after");
    stop(cfg);
}

static void test_unload_releases(void **state)
{
    xmppd_config *cfg = start_text(LOADER_CONFIG, 0);
    xmppd_host *a = xmppd_host_find("a.example");
    char err[256];
    /* Unloading beta cascades to alpha, which depends on it. */
    assert_int_equal(module_unload_one("beta", a, err, sizeof(err)), 0);
    assert_false(xmppd_host_has_module(a, "alpha"));
    assert_false(xmppd_host_has_module(a, "beta"));
    assert_string_equal(fire_trace(a, "ev", NULL), "G0");
    assert_int_equal(module_unload_one("beta", a, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "not loaded"));
    /* Loading again puts the handlers back. */
    assert_int_equal(module_load_one("beta", a, err, sizeof(err)), 0);
    assert_int_equal(module_load_one("alpha", a, err, sizeof(err)), 0);
    assert_string_equal(fire_trace(a, "ev", NULL), "B10,A10,G0,B0,A0");
    stop(cfg);
}

static void test_unload_during_fire(void **state)
{
    xmppd_config *cfg = start_text(
        "{ \"modules\": { \"alpha\": {}, \"beta\": {}, \"killer\": {} },\n"
        "  \"hosts\": { \"a.example\": {} } }", 0);
    xmppd_host *a = xmppd_host_find("a.example");
    /* killer (prio 20) unloads beta and alpha: their handlers must not run. */
    assert_string_equal(fire_trace(a, "ev", NULL), "K,G0");
    assert_string_equal(fire_trace(a, "ev", NULL), "K,G0");
    stop(cfg);
}

static void test_failed_load_unwinds(void **state)
{
    start_text("{ \"modules\": { \"base\": {}, \"broken\": {} },\n \"hosts\": { \"a.example\": {} } }", -1);
    char want[256];
    snprintf(want, sizeof(want),
             "%s:1: modules.broken: module broken refused to load on a.example: no luck today", g_path);
    assert_string_equal(g_err, want);
    assert_int_equal(g_server.n_hosts, 0);
    assert_int_equal(g_server.n_globals, 0);
    assert_null(g_server.cfg);
    xmppd_event ev = { .name = "ev" };
    assert_int_equal(xmppd_fire(&ev), XMPPD_PASS);
}

static void test_dependency_errors(void **state)
{
    xmppd_config *cfg = load_text("{ \"modules\": {\n \"c1\": {} },\n \"hosts\": { \"a.example\": {} } }");
    assert_non_null(cfg);
    assert_int_equal(check_modules(cfg), -1);
    char want[256];
    snprintf(want, sizeof(want), "%s:2: modules.c1: dependency cycle: c1 -> c2 -> c1", g_path);
    assert_string_equal(g_err, want);
    config_free(cfg);

    cfg = load_text("{ \"modules\": { \"alpha\": {} },\n \"hosts\": { \"a.example\": {\n"
                    "  \"modules\": { \"beta\": false } } } }");
    assert_non_null(cfg);
    assert_int_equal(check_modules(cfg), -1);
    snprintf(want, sizeof(want), "%s:3: hosts.a.example.modules.beta: beta is disabled here but alpha "
             "depends on it", g_path);
    assert_string_equal(g_err, want);
    config_free(cfg);

    cfg = load_text("{ \"hosts\": { \"a.example\": {\n  \"modules\": { \"base\": {} } } } }");
    assert_non_null(cfg);
    assert_int_equal(check_modules(cfg), -1);
    assert_non_null(strstr(g_err, ":2: hosts.a.example.modules.base: base is a global module"));
    config_free(cfg);

    cfg = load_text("{ \"modules\": {\n \"nosuchmod\": {} },\n \"hosts\": { \"a.example\": {} } }");
    assert_non_null(cfg);
    assert_int_equal(check_modules(cfg), -1);
    assert_non_null(strstr(g_err, ":2: modules.nosuchmod: module nosuchmod: mod_nosuchmod.so not found"));
    config_free(cfg);
}

static void test_module_options_in_config(void **state)
{
    xmppd_config *cfg = load_text("{ \"modules\": {\n \"fake\": { \"n\": 5 },\n \"needy\": { \"token\": \"t\" } },\n"
                                  " \"hosts\": { \"a.example\": {},\n"
                                  "   \"b.example\": { \"modules\": {\n     \"fake\": { \"n\": 500 } } } } }");
    assert_non_null(cfg);
    assert_int_equal(check_modules(cfg), -1);
    char want[256];
    snprintf(want, sizeof(want), "%s:6: hosts.b.example.modules.fake.n: expected an integer from 1 to 100, "
             "got 500", g_path);
    assert_string_equal(g_err, want);
    config_free(cfg);

    cfg = start_text("{ \"modules\": { \"fake\": { \"n\": 5 } },\n"
                     " \"hosts\": { \"a.example\": {}, \"b.example\": { \"modules\": { \"fake\": { \"n\": 6 } } } } }",
                     0);
    assert_string_equal(g_trace, "fake:n=5,fake:n=6");
    stop(cfg);
}

static int on_loaded(xmppd_event *ev, void *ud)
{
    char s[64];
    snprintf(s, sizeof(s), "%s:%s", ev->name, (const char *)ev->data);
    trace(s);
    return XMPPD_PASS;
}

static void test_reload_and_reconfigure(void **state)
{
    xmppd_config *cfg = start_text("{ \"modules\": { \"fake\": { \"n\": 5 } },\n"
                                   " \"hosts\": { \"a.example\": {} } }", 0);
    xmppd_host *a = xmppd_host_find("a.example");
    assert_int_equal(xmppd_hook(NULL, "module-loaded", on_loaded, 0, NULL), 0);
    assert_int_equal(xmppd_hook(NULL, "module-unloaded", on_loaded, 0, NULL), 0);
    g_trace[0] = '\0';
    char err[512];
    /* Reload: the new instance registers the same IQ while the old one lives. */
    assert_int_equal(module_reload_one("fake", a, err, sizeof(err)), 0);
    assert_string_equal(g_trace, "fake:n=5,module-loaded:fake");

    xmppd_config *cfg2 = load_text("{ \"modules\": { \"fake\": { \"n\": 9 }, \"beta\": {} },\n"
                                   " \"hosts\": { \"a.example\": {}, \"c.example\": {} } }");
    assert_non_null(cfg2);
    g_trace[0] = '\0';
    assert_int_equal(modules_reconfigure(cfg2, err, sizeof(err)), 0);
    config_free(cfg);
    assert_ptr_equal(g_server.cfg, cfg2);
    assert_string_equal(g_trace, "fake:n=9,beta@a.example,module-loaded:fake,module-loaded:beta,"
                                 "fake:n=9,beta@c.example,module-loaded:fake,module-loaded:beta");
    assert_ptr_equal(xmppd_host_find("a.example"), a);
    assert_non_null(xmppd_host_find("c.example"));

    /* A rejected configuration changes nothing. */
    xmppd_config *bad = load_text("{ \"modules\": { \"fake\": { \"n\": 0 } },\n \"hosts\": { \"a.example\": {} } }");
    assert_non_null(bad);
    assert_int_equal(modules_reconfigure(bad, err, sizeof(err)), -1);
    config_free(bad);
    assert_ptr_equal(g_server.cfg, cfg2);
    assert_non_null(xmppd_host_find("c.example"));

    /* Removing a host and a module. */
    xmppd_config *cfg3 = load_text("{ \"modules\": { \"fake\": { \"n\": 9 } },\n \"hosts\": { \"a.example\": {} } }");
    g_trace[0] = '\0';
    assert_int_equal(modules_reconfigure(cfg3, err, sizeof(err)), 0);
    config_free(cfg2);
    assert_null(xmppd_host_find("c.example"));
    assert_false(xmppd_host_has_module(xmppd_host_find("a.example"), "beta"));
    assert_string_equal(g_trace, "module-unloaded:beta");
    stop(cfg3);
}

static xmppd_stanza *make_iq(const char *type, const char *ns)
{
    xmppd_stanza *iq = xmppd_stanza_new("iq", "jabber:client");
    xmppd_stanza_set_attr(iq, "type", type);
    xmppd_stanza_tag(iq, "query", ns);
    return iq;
}

static void test_iq_registry(void **state)
{
    xmppd_config *cfg = start_text(LOADER_CONFIG, 0);
    xmppd_host *a = xmppd_host_find("a.example"), *b = xmppd_host_find("b.example");
    xmppd_stanza *iq = make_iq("get", "urn:xmpp:ping");
    xmppd_event ev = { .name = "iq", .host = a, .stanza = iq };
    g_trace[0] = '\0';
    assert_int_equal(iq_dispatch(a, &ev, XMPPD_IQ_HOST), XMPPD_HANDLED);
    assert_string_equal(g_trace, "ping");
    assert_int_equal(iq_dispatch(a, &ev, XMPPD_IQ_BARE), XMPPD_PASS);
    ev.host = b;
    assert_int_equal(iq_dispatch(b, &ev, XMPPD_IQ_HOST), XMPPD_PASS);
    xmppd_stanza_unref(iq);
    iq = make_iq("set", "urn:xmpp:ping");
    ev.stanza = iq;
    assert_int_equal(iq_dispatch(a, &ev, XMPPD_IQ_HOST), XMPPD_PASS);
    xmppd_stanza_unref(iq);

    /* A second owner of the same key on the same host is refused. */
    xmppd_module *beta = a->modules[0];
    assert_string_equal(xmppd_module_name(beta), "beta");
    assert_int_equal(xmppd_iq_handle(beta, "get", "urn:xmpp:ping", XMPPD_IQ_HOST, on_iq, "x"), -1);
    assert_int_equal(xmppd_iq_handle(beta, "get", "urn:xmpp:ping", XMPPD_IQ_BARE, on_iq, "x"), 0);
    /* ... but another host may have its own. */
    assert_int_equal(xmppd_iq_handle(b->modules[0], "get", "urn:xmpp:ping", XMPPD_IQ_HOST, on_iq, "b"), 0);
    stop(cfg);

    start_text("{ \"modules\": { \"alpha\": {}, \"dup\": {} },\n \"hosts\": { \"a.example\": {} } }", -1);
    assert_non_null(strstr(g_err, "modules.dup: module dup refused to load on a.example"));
}

/* xmppd_domain_serve: one server per domain, never a host's name, released
 * on unload; the router and s2s find it (domains_dispatch, domains_name). */
static void test_domain_serve(void **state)
{
    xmppd_config *cfg = start_text(LOADER_CONFIG, 0);
    xmppd_host *a = xmppd_host_find("a.example"), *b = xmppd_host_find("b.example");
    xmppd_module *beta = a->modules[0], *alpha = a->modules[1];
    assert_string_equal(xmppd_module_name(alpha), "alpha");
    assert_int_equal(xmppd_domain_serve(alpha, "Rooms.A.Example", on_iq, "rooms"), 0);
    assert_string_equal(domains_name("rooms.a.example"), "rooms.a.example");
    assert_null(domains_name("a.example"));
    /* Taken, a host, or not a domain at all. */
    assert_int_equal(xmppd_domain_serve(beta, "rooms.a.example", on_iq, "x"), -1);
    assert_int_equal(xmppd_domain_serve(b->modules[0], "rooms.a.example", on_iq, "x"), -1);
    assert_int_equal(xmppd_domain_serve(beta, "b.example", on_iq, "x"), -1);
    assert_int_equal(xmppd_domain_serve(beta, "bad domain@", on_iq, "x"), -1);

    xmppd_jid *to = xmppd_jid_parse("room@rooms.a.example/nick");
    xmppd_event ev = { .name = "message/domain", .to = to };
    g_trace[0] = '\0';
    assert_int_equal(domains_dispatch(&ev), XMPPD_HANDLED);
    assert_string_equal(g_trace, "rooms");
    assert_ptr_equal(ev.host, a);
    xmppd_jid_free(to);
    to = xmppd_jid_parse("room@other.example");
    ev.to = to;
    assert_int_equal(domains_dispatch(&ev), DOMAINS_NONE);
    xmppd_jid_free(to);

    char err[256];
    assert_int_equal(module_unload_one("alpha", a, err, sizeof(err)), 0);
    assert_null(domains_name("rooms.a.example"));
    assert_int_equal(xmppd_domain_serve(beta, "rooms.a.example", on_iq, "beta"), 0);
    stop(cfg);
    assert_null(domains_name("rooms.a.example"));
}

static void collect_feature(const char *var, void *ud)
{
    trace(var);
}

static void collect_identity(const char *category, const char *type, const char *name, void *ud)
{
    char s[128];
    snprintf(s, sizeof(s), "%s/%s/%s", category, type, name ? name : "");
    trace(s);
}

static void test_disco(void **state)
{
    xmppd_config *cfg = start_text(LOADER_CONFIG, 0);
    xmppd_host *a = xmppd_host_find("a.example"), *b = xmppd_host_find("b.example");
    g_trace[0] = '\0';
    xmppd_disco_foreach_feature(a, collect_feature, NULL);
    assert_string_equal(g_trace, "urn:base,urn:xmpp:ping"); /* unique */
    g_trace[0] = '\0';
    xmppd_disco_foreach_feature(b, collect_feature, NULL);
    assert_string_equal(g_trace, "urn:base");
    g_trace[0] = '\0';
    xmppd_disco_foreach_identity(a, collect_identity, NULL);
    assert_string_equal(g_trace, "server/im/xmppd");
    char err[256];
    assert_int_equal(module_unload_one("alpha", a, err, sizeof(err)), 0);
    g_trace[0] = '\0';
    xmppd_disco_foreach_feature(a, collect_feature, NULL);
    assert_string_equal(g_trace, "urn:base");
    stop(cfg);
}

static void test_log_format(void **state)
{
    char path[160];
    snprintf(path, sizeof(path), "%s/test.log", g_dir);
    assert_int_equal(log_open(path, XMPPD_LOG_INFO), 0);
    assert_true(xmppd_log_enabled(XMPPD_LOG_INFO));
    assert_false(xmppd_log_enabled(XMPPD_LOG_DEBUG));
    log_kernel("c2s", XMPPD_LOG_WARN, "two\nlines %d", 2);
    log_kernel("c2s", XMPPD_LOG_DEBUG, "hidden");
    xmppd_log(NULL, XMPPD_LOG_INFO, "kernel");
    assert_int_equal(log_open(NULL, XMPPD_LOG_ERROR), 0);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char line[256];
    assert_non_null(fgets(line, sizeof(line), f));
    /* 2026-11-28T10:00:00.123Z warn  c2s: two lines 2 */
    assert_int_equal(strlen(line), 24 + 1 + 6 + strlen("c2s: two lines 2\n"));
    assert_int_equal(line[10], 'T');
    assert_int_equal(line[23], 'Z');
    assert_string_equal(line + 25, "warn  c2s: two lines 2\n");
    assert_non_null(fgets(line, sizeof(line), f));
    assert_string_equal(line + 25, "info  xmppd: kernel\n");
    assert_null(fgets(line, sizeof(line), f));
    fclose(f);
    unlink(path);
}

/* ---- descriptors: the ABI tolerates growth (api/xmppd/module.h) ---------------------- */

static int adopt(const xmppd_module_def *d, xmppd_module_def *copy)
{
    return module_def_adopt(copy, d, "m", "mod_m.so", g_err, sizeof(g_err));
}

static void test_descriptor_abi(void **state)
{
    xmppd_module_def copy;
    xmppd_module_def good = { XMPPD_MODULE_HEAD("m"), .version = "1", .load = noop_load };
    assert_int_equal(adopt(&good, &copy), 0);
    assert_ptr_equal(copy.load, noop_load);

    /* A module built for an older minor has a shorter descriptor: only
     * def_size bytes are read, what it lacks reads as zero. Simulated with
     * a buffer whose bytes past the declared size are garbage. */
    union { xmppd_module_def d; unsigned char raw[sizeof(xmppd_module_def) + 64]; } older;
    memset(&older, 0xa5, sizeof(older));
    older.d = good;
    older.d.abi = (XMPPD_ABI_MAJOR << 16) | 0;
    older.d.def_size = offsetof(xmppd_module_def, unload) + sizeof(void (*)(void));
    assert_int_equal(adopt(&older.d, &copy), 0);
    assert_ptr_equal(copy.load, noop_load);
    for (size_t i = older.d.def_size; i < sizeof(copy); i++)
        assert_int_equal(((unsigned char *)&copy)[i], 0);

    /* A newer major, a newer minor, a descriptor too small for this major. */
    xmppd_module_def bad = good;
    bad.abi = (uint32_t)(XMPPD_ABI_MAJOR + 1) << 16;
    assert_int_equal(adopt(&bad, &copy), -1);
    assert_non_null(strstr(g_err, "mod_m.so: built for module ABI 3.0"));
    assert_non_null(strstr(g_err, "a different major version"));
    bad.abi = XMPPD_ABI + 1;
    assert_int_equal(adopt(&bad, &copy), -1);
    assert_non_null(strstr(g_err, "a newer minor version"));
    bad = good;
    bad.def_size = 2 * sizeof(uint32_t);
    assert_int_equal(adopt(&bad, &copy), -1);
    assert_non_null(strstr(g_err, "declare it with XMPPD_MODULE()"));

    /* Missing fields: name, version, load; options without a conf size. */
    bad = good;
    bad.name = "other";
    assert_int_equal(adopt(&bad, &copy), -1);
    assert_string_equal(g_err, "mod_m.so: descriptor names module \"other\", expected \"m\"");
    bad = good;
    bad.version = NULL;
    assert_int_equal(adopt(&bad, &copy), -1);
    assert_string_equal(g_err, "mod_m.so: descriptor of module m has no version");
    bad = good;
    bad.load = NULL;
    assert_int_equal(adopt(&bad, &copy), -1);
    assert_string_equal(g_err, "mod_m.so: descriptor of module m has no load function");
    bad = good;
    bad.options = fake_options;
    assert_int_equal(adopt(&bad, &copy), -1);
    assert_string_equal(g_err, "mod_m.so: module m has options but conf_size 0");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_descriptor_abi),
        cmocka_unit_test(test_bad_json),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_type_and_range),
        cmocka_unit_test(test_bad_duration_size),
        cmocka_unit_test(test_no_hosts),
        cmocka_unit_test(test_bad_listener),
        cmocka_unit_test(test_http_listener),
        cmocka_unit_test(test_components),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_comments),
        cmocka_unit_test(test_values_and_lines),
        cmocka_unit_test(test_parsers),
        cmocka_unit_test(test_options_defaults),
        cmocka_unit_test(test_options_values),
        cmocka_unit_test(test_options_errors),
        cmocka_unit_test(test_options_bad_default),
        cmocka_unit_test(test_options_print),
        cmocka_unit_test(test_options_nested),
        cmocka_unit_test(test_every_error),
        cmocka_unit_test_setup(test_loader_order, setup_loader),
        cmocka_unit_test_setup(test_hook_priority_and_ties, setup_loader),
        cmocka_unit_test_setup(test_hook_handled_fail_all, setup_loader),
        cmocka_unit_test_setup(test_unload_releases, setup_loader),
        cmocka_unit_test_setup(test_unload_during_fire, setup_loader),
        cmocka_unit_test_setup(test_failed_load_unwinds, setup_loader),
        cmocka_unit_test_setup(test_dependency_errors, setup_loader),
        cmocka_unit_test_setup(test_module_options_in_config, setup_loader),
        cmocka_unit_test_setup(test_reload_and_reconfigure, setup_loader),
        cmocka_unit_test_setup(test_iq_registry, setup_loader),
        cmocka_unit_test_setup(test_disco, setup_loader),
        cmocka_unit_test_setup(test_domain_serve, setup_loader),
        cmocka_unit_test(test_log_format),
    };
    return cmocka_run_group_tests(tests, setup_dir, teardown_dir);
}
