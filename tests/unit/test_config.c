/*
 * Unit tests for core/config: defaults (cross-checked against
 * conf/followupd.conf.example), INI parsing, per-line error reports, required
 * values per backend/auth mode, environment overrides, `*_file` secrets with
 * $CREDENTIALS_DIRECTORY, schema identifiers, reload helpers
 * (config_diff_static / config_adopt_static) and secret registration with the
 * logger.
 *
 * The environment is a fake table read through the config_getenv_fn hook (the
 * hook has no context argument, so the table is file-scope test state, reset by
 * every setup).  Files are written with mkstemp under /tmp and removed by the
 * teardown.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "core/config.h"
#include "support/secret_pieces.h"
#include "utils/log.h"

/* ---- fake environment ----------------------------------------------------- */

#define FAKE_ENV_MAX 16
static struct {
    const char *name[FAKE_ENV_MAX];
    const char *value[FAKE_ENV_MAX];
    int n;
} fake_env;

static const char *fake_getenv(const char *name)
{
    for (int i = 0; i < fake_env.n; i++)
        if (strcmp(fake_env.name[i], name) == 0) return fake_env.value[i];
    return NULL;
}

static void env_set(const char *name, const char *value)
{
    assert_true(fake_env.n < FAKE_ENV_MAX);
    fake_env.name[fake_env.n] = name;
    fake_env.value[fake_env.n] = value;
    fake_env.n++;
}

/* ---- fixture: temp files, one loaded config, its errors --------------------- */

#define MAX_TMP 64
struct fixture {
    char tmp[MAX_TMP][64];
    int n_tmp;
    char dir[64];              /* a temp directory (CREDENTIALS_DIRECTORY), "" if unused */
    char path[64];             /* config file of the last load_text() */
    struct config cfg;
    struct config_errors errs;
};

static int setup(void **state)
{
    memset(&fake_env, 0, sizeof(fake_env));
    struct fixture *f = calloc(1, sizeof(*f));
    if (f == NULL) return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    config_free(&f->cfg);
    config_errors_free(&f->errs);
    for (int i = 0; i < f->n_tmp; i++) unlink(f->tmp[i]);
    if (f->dir[0] != '\0') rmdir(f->dir);
    free(f);
    return 0;
}

/* Write content to a new file (in dir when given, else a mkstemp file in /tmp). */
static const char *write_file(struct fixture *f, const char *dir_name, const char *content, size_t len)
{
    assert_true(f->n_tmp < MAX_TMP);
    char *path = f->tmp[f->n_tmp];
    int fd;
    if (dir_name != NULL) {
        snprintf(path, sizeof(f->tmp[0]), "%s/%s", f->dir, dir_name);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    } else {
        snprintf(path, sizeof(f->tmp[0]), "/tmp/followupd-cfg-XXXXXX");
        fd = mkstemp(path);
    }
    assert_true(fd >= 0);
    f->n_tmp++;
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    return path;
}

static const char *write_text(struct fixture *f, const char *text)
{
    return write_file(f, NULL, text, strlen(text));
}

static const char *make_dir(struct fixture *f)
{
    snprintf(f->dir, sizeof(f->dir), "/tmp/followupd-cred-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    return f->dir;
}

/* Load text as a config file into f->cfg (errors accumulate in f->errs). */
static int load_text(struct fixture *f, const char *text)
{
    config_free(&f->cfg);
    snprintf(f->path, sizeof(f->path), "%s", write_text(f, text));
    return config_load(&f->cfg, f->path, fake_getenv, &f->errs);
}

/* First error containing every given needle (NULL-terminated list), or NULL. */
static const char *find_error_v(const struct config_errors *errs, const char *const *needles)
{
    for (int i = 0; i < errs->n; i++) {
        bool all = true;
        for (int k = 0; needles[k] != NULL && all; k++) all = strstr(errs->msgs[i], needles[k]) != NULL;
        if (all) return errs->msgs[i];
    }
    return NULL;
}
#define find_error(errs, ...) find_error_v((errs), (const char *const[]){__VA_ARGS__, NULL})

static void dump_errors(const struct config_errors *errs)
{
    for (int i = 0; i < errs->n; i++) print_message("  config error: %s\n", errs->msgs[i]);
}

static void assert_has_error_at(const struct fixture *f, int line, const char *key)
{
    char where[96];
    snprintf(where, sizeof(where), "%s:%d:", f->path, line);
    if (find_error(&f->errs, where, key) == NULL) {
        dump_errors(&f->errs);
        fail_msg("no error naming %s and %s", where, key);
    }
}

static void assert_no_errors(const struct fixture *f)
{
    if (f->errs.n != 0) {
        dump_errors(&f->errs);
        fail_msg("%d unexpected config error(s)", f->errs.n);
    }
}

static void assert_no_error_contains(const struct config_errors *errs, const char *text)
{
    for (int i = 0; i < errs->n; i++)
        if (strstr(errs->msgs[i], text) != NULL) fail_msg("error message leaks '%s': %s", text, errs->msgs[i]);
}

static void assert_list(const struct strlist *l, const char *const *expected)
{
    int n = 0;
    while (expected[n] != NULL) n++;
    assert_int_equal(l->n, n);
    for (int i = 0; i < n; i++) assert_string_equal(l->items[i], expected[i]);
}
#define assert_strlist(l, ...) assert_list((l), (const char *const[]){__VA_ARGS__, NULL})

/* Everything a cloudtasks + oidc deployment needs (13 lines). */
#define REQUIRED_TEXT                                              \
    "[database]\n"                                                 \
    "conninfo = host=127.0.0.1 dbname=lad user=followupd\n"        \
    "schemas = tenant_a\n"                                         \
    "[http]\n"                                                     \
    "public_url = https://followupd.example.com\n"                 \
    "[cloudtasks]\n"                                               \
    "project = my-project\n"                                       \
    "location = europe-west1\n"                                    \
    "[auth]\n"                                                     \
    "audience = https://followupd.example.com\n"                   \
    "service_account = invoker@my-project.iam.gserviceaccount.com\n" \
    "[voice_agent]\n"                                              \
    "base_url = http://127.0.0.1:3000\n"

/* Every optional key at the default documented in conf/followupd.conf.example. */
static void assert_documented_defaults(const struct config *c)
{
    assert_int_equal(c->db_pool_size, 4);
    assert_int_equal(c->db_max_queue, 1024);
    assert_true(c->db_prepared_statements);
    assert_string_equal(c->http_listen, "127.0.0.1:8080");
    assert_int_equal(c->http_max_header_bytes, 16384);
    assert_int_equal(c->http_max_body_bytes, 65536);
    assert_int_equal(c->http_header_timeout_ms, 10000);
    assert_int_equal(c->http_body_timeout_ms, 10000);
    assert_int_equal(c->http_idle_timeout_ms, 60000);
    assert_int_equal(c->http_max_connections, 1024);
    assert_int_equal(c->http_max_connections_per_peer, 64);
    assert_strlist(&c->followup_booking_types, "follow_up", "followup", "auto_follow_up", "auto_followup");
    assert_int_equal(c->followup_lead_time_s, 0);
    assert_int_equal(c->followup_sweep_interval_s, 30);
    assert_int_equal(c->followup_catchup_window_s, 3600);
    assert_int_equal(c->followup_max_inflight, 64);
    assert_int_equal(c->followup_max_attempts, 5);
    assert_int_equal(c->followup_retry_base_s, 10);
    assert_int_equal(c->followup_early_tolerance_s, 300);
    assert_int_equal(c->auth_jwks_refetch_interval_s, 2);
    assert_int_equal(c->auth_jwks_min_refresh_s, 30);
    assert_int_equal(c->followup_max_lateness_s, 3600);
    assert_int_equal(c->va_max_concurrent, 0);
    assert_int_equal(c->va_max_concurrent_per_tenant, 0);
    assert_int_equal(c->capture_mode, CAPTURE_NOTIFY);
    assert_int_equal(c->capture_notify_within_s, 900);
    assert_int_equal(c->capture_poll_interval_ms, 1000);
    assert_int_equal(c->replicas_partitions, 64);
    assert_int_equal(c->replicas_rebalance_interval_ms, 1000);
    assert_int_equal(c->queue_backend, QUEUE_CLOUDTASKS);
    assert_string_equal(c->ct_endpoint, "https://cloudtasks.googleapis.com");
    assert_string_equal(c->ct_queue, "follow-up-calls");
    assert_string_equal(c->ct_credentials, "metadata");
    assert_string_equal(c->ct_metadata_url, "http://metadata.google.internal");
    assert_int_equal(c->ct_dispatch_deadline_s, 600);
    assert_int_equal(c->auth_mode, AUTH_OIDC);
    assert_string_equal(c->auth_jwks_url, "https://www.googleapis.com/oauth2/v3/certs");
    assert_strlist(&c->auth_issuers, "https://accounts.google.com", "accounts.google.com");
    assert_int_equal(c->auth_clock_skew_s, 60);
    assert_null(c->auth_shared_secret);
    assert_null(c->va_token);
    assert_int_equal(c->va_timeout_ms, 30000);
    assert_int_equal(c->log_level, LOG_LEVEL_INFO);
    assert_int_equal(c->log_format, LOG_FORMAT_JSON);
    assert_int_equal(c->shutdown_drain_timeout_ms, 20000);
}

static char *read_whole(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) fail_msg("cannot open %s: %s", path, strerror(errno));
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, fp);
    assert_true(n > 0 && n < 65535);
    fclose(fp);
    return buf;
}

static const char *example_path(char *buf, size_t cap)
{
    const char *root = getenv("FOLLOWUPD_ROOT");
    snprintf(buf, cap, "%s/conf/followupd.conf.example", root != NULL && root[0] != '\0' ? root : ".");
    return buf;
}

/* The eight values the example leaves unset and a cloudtasks+oidc setup needs. */
static const char *const example_missing[] = {
    "[database] conninfo", "[database] schemas", "[voice_agent] base_url", "[cloudtasks] project",
    "[cloudtasks] location", "[http] public_url", "[auth] audience", "[auth] service_account",
};
#define N_EXAMPLE_MISSING (int)(sizeof(example_missing) / sizeof(example_missing[0]))

static void assert_only_example_missing(const struct config_errors *errs)
{
    if (errs->n != N_EXAMPLE_MISSING) dump_errors(errs);
    assert_int_equal(errs->n, N_EXAMPLE_MISSING);
    for (int i = 0; i < N_EXAMPLE_MISSING; i++)
        if (find_error(errs, "missing required value", example_missing[i]) == NULL)
            fail_msg("not reported: %s", example_missing[i]);
}

/* ---- defaults --------------------------------------------------------------- */

static void config_load__required_keys_only__documented_defaults(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, REQUIRED_TEXT), 0);
    assert_no_errors(f);
    assert_documented_defaults(&f->cfg);
    assert_string_equal(f->cfg.db_conninfo, "host=127.0.0.1 dbname=lad user=followupd");
    assert_strlist(&f->cfg.db_schemas, "tenant_a");
    assert_string_equal(f->cfg.va_base_url, "http://127.0.0.1:3000");
}

static void config_load__notify_window_shorter_than_the_sweep__error_poll_mode_or_zero_fine(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, REQUIRED_TEXT "[followup]\nsweep_interval_s = 600\n[capture]\nnotify_within_s = 300\n"),
                     -1);
    assert_non_null(find_error_v(&f->errs, (const char *const[]){"[capture] notify_within_s", "(660)", NULL}));
    config_errors_free(&f->errs);
    assert_int_equal(load_text(f, REQUIRED_TEXT "[followup]\nsweep_interval_s = 600\n[capture]\nnotify_within_s = 660\n"),
                     0);
    assert_int_equal(load_text(f, REQUIRED_TEXT "[followup]\nsweep_interval_s = 600\n[capture]\nnotify_within_s = 0\n"),
                     0);
    assert_int_equal(load_text(f, REQUIRED_TEXT "[followup]\nsweep_interval_s = 600\n[capture]\nmode = poll\n"), 0);
    assert_int_equal(f->cfg.capture_mode, CAPTURE_POLL);
    assert_int_equal(load_text(f, REQUIRED_TEXT "[capture]\nmode = listen\n"), -1);
    config_errors_free(&f->errs);
    assert_int_equal(load_text(f, REQUIRED_TEXT "[followup]\nbooking_types = follow_up,fol'low\n"), -1);
    assert_non_null(find_error_v(&f->errs, (const char *const[]){"[followup] booking_types", NULL}));
    config_errors_free(&f->errs);
}

static void config_load__example_file_as_shipped__reports_only_missing_required(void **state)
{
    struct fixture *f = *state;
    char path[512];
    assert_int_equal(config_load(&f->cfg, example_path(path, sizeof(path)), fake_getenv, &f->errs), -1);
    assert_only_example_missing(&f->errs);
    assert_documented_defaults(&f->cfg);
}

/* Uncomment every "#key = value" line of the example that documents a default
 * (not the placeholders of required values): the result must equal the
 * built-in defaults, i.e. the example tells the truth. */
static void config_load__example_defaults_uncommented__same_as_builtin(void **state)
{
    struct fixture *f = *state;
    static const char *const placeholders[] = {"conninfo", "conninfo_file", "schemas", "public_url",
                                               "project", "location", "credentials", "audience",
                                               "service_account", "shared_secret_file", "base_url",
                                               "token_file", NULL};
    char path[512];
    char *text = read_whole(example_path(path, sizeof(path)));
    char *out = calloc(1, strlen(text) + 1);
    assert_non_null(out);
    int uncommented = 0;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
        char key[64] = "";
        bool is_default = false;
        if (line[0] == '#' && sscanf(line + 1, "%63[a-z_] =", key) == 1 && strstr(line, " = ") != NULL) {
            is_default = true;
            for (int i = 0; placeholders[i] != NULL; i++)
                if (strcmp(key, placeholders[i]) == 0) is_default = false;
        }
        strcat(out, is_default ? line + 1 : line);
        strcat(out, "\n");
        uncommented += is_default;
    }
    assert_int_equal(uncommented, 42); /* every optional key of the table is documented */
    assert_int_equal(load_text(f, out), -1);
    assert_only_example_missing(&f->errs);
    assert_documented_defaults(&f->cfg);
    free(out);
    free(text);
}

static void config_load__google_application_credentials__default_credentials(void **state)
{
    struct fixture *f = *state;
    env_set("GOOGLE_APPLICATION_CREDENTIALS", "/etc/followupd/sa.json");
    assert_int_equal(load_text(f, REQUIRED_TEXT), 0);
    assert_string_equal(f->cfg.ct_credentials, "/etc/followupd/sa.json");

    fake_env.value[0] = "";
    assert_int_equal(load_text(f, REQUIRED_TEXT), 0);
    assert_string_equal(f->cfg.ct_credentials, "metadata");

    fake_env.value[0] = "/etc/followupd/sa.json";
    assert_int_equal(load_text(f, REQUIRED_TEXT "[cloudtasks]\ncredentials = /other.json\n"), 0);
    assert_string_equal(f->cfg.ct_credentials, "/other.json");
    assert_no_errors(f);
}

/* ---- parsing ----------------------------------------------------------------- */

static void config_load__comments_blank_lines_whitespace_crlf__parsed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "# a comment\n"
                                  "; another comment\n"
                                  "   # indented comment\n"
                                  "\n"
                                  "   \t \n"
                                  "  [ log ]  \n"
                                  "\tlevel\t=\twarn   \n"
                                  "[http]\r\n"
                                  "listen=0.0.0.0:9090\r\n"
                                  "max_connections =   7\r\n"
                                  "[followup]\n"
                                  "booking_types =  a , b,c  \n" REQUIRED_TEXT),
                     0);
    assert_no_errors(f);
    assert_int_equal(f->cfg.log_level, LOG_LEVEL_WARN);
    assert_string_equal(f->cfg.http_listen, "0.0.0.0:9090");
    assert_int_equal(f->cfg.http_max_connections, 7);
    assert_strlist(&f->cfg.followup_booking_types, "a", "b", "c");
}

static void config_load__value_with_equals_hash_semicolon__kept_verbatim(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[database]\nconninfo = host=db password=p#ss;w=rd application_name='# not a comment'\n"
                                  "schemas = s\n[queue]\nbackend = local\n"
                                  "[voice_agent]\nbase_url = http://va\n"),
                     0);
    assert_string_equal(f->cfg.db_conninfo, "host=db password=p#ss;w=rd application_name='# not a comment'");
}

static void config_load__key_given_twice__error_names_both_lines(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[log]\nlevel = warn\nlevel = error\n" REQUIRED_TEXT), -1);
    assert_int_equal(f->errs.n, 1);
    assert_has_error_at(f, 3, "level");
    char first[96];
    snprintf(first, sizeof(first), "%s:2", f->path);
    assert_non_null(find_error(&f->errs, first, "twice"));
}

static void config_load__unknown_key__error_names_file_line_and_key(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[log]\nlevle = debug\n" REQUIRED_TEXT), -1);
    assert_int_equal(f->errs.n, 1);
    assert_has_error_at(f, 2, "levle");
}

static void config_load__key_of_other_section__unknown_key(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[http]\nlevel = debug\n" REQUIRED_TEXT), -1);
    assert_int_equal(f->errs.n, 1);
    assert_has_error_at(f, 2, "level");
    assert_int_equal(f->cfg.log_level, LOG_LEVEL_INFO);
}

static void config_load__unknown_section__one_error_names_file_line_and_section(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[logging]\nlevel = debug\nanything = 1\n" REQUIRED_TEXT), -1);
    assert_int_equal(f->errs.n, 1); /* its keys are not reported again */
    assert_has_error_at(f, 1, "logging");
    assert_int_equal(f->cfg.log_level, LOG_LEVEL_INFO);
}

static void config_load__malformed_lines__each_reported_with_line(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "level = debug\n"      /* 1: before any section */
                                  "[log\n"               /* 2: malformed header */
                                  "[log] trailing\n"     /* 3: malformed header */
                                  "[log]\n"
                                  "just some words\n"    /* 5: no '=' */
                                  REQUIRED_TEXT),
                     -1);
    assert_int_equal(f->errs.n, 4);
    assert_has_error_at(f, 1, "level");
    assert_has_error_at(f, 2, "section");
    assert_has_error_at(f, 3, "section");
    assert_has_error_at(f, 5, "=");
}

struct bad_value {
    const char *section;
    const char *line;
    const char *key;
};

static void config_load__malformed_section_header__its_keys_not_misfiled(void **state)
{
    struct fixture *f = *state;
    /* keys below a broken header neither land in the previous section nor
     * produce follow-on errors: one problem, one message */
    assert_int_equal(load_text(f, REQUIRED_TEXT "[log\nlevel = debug\n[http\nlisten = 0.0.0.0:1\n"), -1);
    if (f->errs.n != 2) dump_errors(&f->errs);
    assert_int_equal(f->errs.n, 2);
    assert_has_error_at(f, 14, "section");
    assert_has_error_at(f, 16, "section");
    assert_int_equal(f->cfg.log_level, LOG_LEVEL_INFO);
    assert_string_equal(f->cfg.http_listen, "127.0.0.1:8080");
}

static void config_load__int_out_of_range__error_states_bounds(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[database]\npool_size = 65\n[http]\nmax_connections = 0\n" REQUIRED_TEXT), -1);
    assert_int_equal(f->errs.n, 2);
    assert_non_null(find_error(&f->errs, "pool_size", "[1, 64]"));
    assert_non_null(find_error(&f->errs, "max_connections", "[1, 100000]"));
}

static void config_load__config_path_is_directory__error(void **state)
{
    struct fixture *f = *state;
    const char *dir = make_dir(f);
    assert_int_equal(config_load(&f->cfg, dir, fake_getenv, &f->errs), -1);
    assert_non_null(find_error(&f->errs, dir, "cannot read"));
}

static void config_load__bad_values__error_names_file_line_and_key(void **state)
{
    struct fixture *f = *state;
    static const struct bad_value cases[] = {
        {"database", "pool_size = four", "pool_size"},
        {"database", "pool_size = 4x", "pool_size"},
        {"database", "pool_size =", "pool_size"},
        {"database", "pool_size = 0", "pool_size"},
        {"database", "pool_size = 65", "pool_size"},
        {"database", "pool_size = -1", "pool_size"},
        {"database", "pool_size = 99999999999999999999", "pool_size"},
        {"database", "max_queue = 1.5", "max_queue"},
        {"database", "prepared_statements = maybe", "prepared_statements"},
        {"database", "prepared_statements =", "prepared_statements"},
        {"database", "prepared_statements = 2", "prepared_statements"},
        {"cloudtasks", "dispatch_deadline_s = 14", "dispatch_deadline_s"},
        {"cloudtasks", "dispatch_deadline_s = 1801", "dispatch_deadline_s"},
        {"queue", "backend = sqs", "backend"},
        {"queue", "backend = CloudTasks", "backend"},
        {"auth", "mode = basic", "mode"},
        {"log", "level = verbose", "level"},
        {"log", "level = DEBUG", "level"},
        {"voice_agent", "base_url = ftp://va.example.com", "base_url"},
        {"voice_agent", "base_url = va.example.com:3000", "base_url"},
        {"voice_agent", "base_url = http://", "base_url"},
        {"cloudtasks", "endpoint = cloudtasks.googleapis.com", "endpoint"},
        {"auth", "jwks_url = file:///etc/passwd", "jwks_url"},
        {"http", "listen = 8080", "listen"},
        {"http", "listen = localhost", "listen"},
        {"http", "listen = localhost:http", "listen"},
        {"http", "listen = localhost:65536", "listen"},
        {"http", "listen = localhost:", "listen"},
        {"http", "listen = ::1:8080", "listen"},
        {"http", "listen = [::1:8080", "listen"},
        {"followup", "booking_types =", "booking_types"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[2048];
        snprintf(text, sizeof(text), "[%s]\n%s\n%s", cases[i].section, cases[i].line, REQUIRED_TEXT);
        config_errors_free(&f->errs);
        if (load_text(f, text) != -1) fail_msg("accepted: [%s] %s", cases[i].section, cases[i].line);
        if (f->errs.n != 1) {
            dump_errors(&f->errs);
            fail_msg("[%s] %s: expected exactly one error", cases[i].section, cases[i].line);
        }
        assert_has_error_at(f, 2, cases[i].key);
    }
}

static void config_load__valid_listen_forms__accepted(void **state)
{
    struct fixture *f = *state;
    static const char *const ok[] = {"0.0.0.0:80", "127.0.0.1:0", "localhost:65535", "[::1]:8080", "[::]:443"};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "[http]\nlisten = %s\n%s", ok[i], REQUIRED_TEXT);
        if (load_text(f, text) != 0) {
            dump_errors(&f->errs);
            fail_msg("rejected listen = %s", ok[i]);
        }
        assert_string_equal(f->cfg.http_listen, ok[i]);
    }
}

static void config_load__int_bounds__inclusive(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[database]\npool_size = 64\n[cloudtasks]\ndispatch_deadline_s = 15\n"
                                  "[followup]\nlead_time_s = 0\n" REQUIRED_TEXT),
                     0);
    assert_int_equal(f->cfg.db_pool_size, 64);
    assert_int_equal(f->cfg.ct_dispatch_deadline_s, 15);
    assert_int_equal(f->cfg.followup_lead_time_s, 0);
}

static void config_load__many_problems__all_reported_at_once(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[log]\n"
                                  "level = loud\n"             /* 2 */
                                  "[bogus]\n"                  /* 3 */
                                  "[http]\n"
                                  "listen = nowhere\n"         /* 5 */
                                  "max_connections = 0\n"      /* 6 */
                                  "foo = bar\n"                /* 7 */
                                  "[database]\n"
                                  "schemas = a-b\n"),          /* 9 */
                     -1);
    /* 6 bad lines + 8 missing required values (schemas is missing too: its value was bad) */
    if (f->errs.n != 14) dump_errors(&f->errs);
    assert_int_equal(f->errs.n, 14);
    assert_has_error_at(f, 2, "level");
    assert_has_error_at(f, 3, "bogus");
    assert_has_error_at(f, 5, "listen");
    assert_has_error_at(f, 6, "max_connections");
    assert_has_error_at(f, 7, "foo");
    assert_has_error_at(f, 9, "schemas");
    for (int i = 0; i < N_EXAMPLE_MISSING; i++)
        if (find_error(&f->errs, "missing required value", example_missing[i]) == NULL)
            fail_msg("not reported: %s", example_missing[i]);
}

static void config_load__missing_file__error_names_path(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(config_load(&f->cfg, "/nonexistent/followupd.conf", fake_getenv, &f->errs), -1);
    assert_non_null(find_error(&f->errs, "/nonexistent/followupd.conf", "cannot open"));
}

/* ---- required values ------------------------------------------------------------ */

static void config_load__empty_file_cloudtasks_oidc__each_missing_value_reported(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, ""), -1);
    assert_only_example_missing(&f->errs);
}

static void config_load__required_values_empty__reported_missing(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[database]\nconninfo =\n[voice_agent]\nbase_url = http://va\n"
                                  "[queue]\nbackend = local\n[database]\nschemas = s\n"),
                     -1);
    assert_int_equal(f->errs.n, 1);
    assert_non_null(find_error(&f->errs, "missing required value", "[database] conninfo"));
}

static void config_load__local_backend__cloudtasks_and_oidc_values_optional(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[queue]\nbackend = local\n[database]\nconninfo = dbname=x\nschemas = s\n"
                                  "[voice_agent]\nbase_url = http://va\n"),
                     0);
    assert_no_errors(f);
    assert_int_equal(f->cfg.queue_backend, QUEUE_LOCAL);
    assert_null(f->cfg.ct_project);
    assert_null(f->cfg.http_public_url);
}

static void config_load__local_backend_without_common_values__those_reported(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[queue]\nbackend = local\n"), -1);
    assert_int_equal(f->errs.n, 3);
    assert_non_null(find_error(&f->errs, "missing required value", "[database] conninfo"));
    assert_non_null(find_error(&f->errs, "missing required value", "[database] schemas"));
    assert_non_null(find_error(&f->errs, "missing required value", "[voice_agent] base_url"));
}

#define CT_NO_AUTH_TEXT                                                                          \
    "[database]\nconninfo = dbname=x\nschemas = s\n[voice_agent]\nbase_url = http://va\n"        \
    "[http]\npublic_url = https://f.example.com\n[cloudtasks]\nproject = p\nlocation = l\n"

static void config_load__cloudtasks_shared_secret_mode__secret_required_not_oidc_values(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, CT_NO_AUTH_TEXT "[auth]\nmode = shared_secret\n"), -1);
    assert_int_equal(f->errs.n, 1);
    assert_non_null(find_error(&f->errs, "missing required value", "[auth] shared_secret"));

    config_errors_free(&f->errs);
    assert_int_equal(load_text(f, CT_NO_AUTH_TEXT "[auth]\nmode = shared_secret\nshared_secret = 0123456789abcde\n"),
                     -1);
    assert_int_equal(f->errs.n, 1);
    assert_non_null(find_error(&f->errs, "shared_secret", "16 bytes"));

    config_errors_free(&f->errs);
    assert_int_equal(load_text(f, CT_NO_AUTH_TEXT "[auth]\nmode = shared_secret\nshared_secret = 0123456789abcdef\n"),
                     0);
    assert_string_equal(f->cfg.auth_shared_secret, "0123456789abcdef");
}

static void config_load__local_backend_shared_secret_mode__secret_required(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[queue]\nbackend = local\n[auth]\nmode = shared_secret\n"
                                  "[database]\nconninfo = dbname=x\nschemas = s\n[voice_agent]\nbase_url = http://va\n"),
                     -1);
    assert_int_equal(f->errs.n, 1);
    assert_non_null(find_error(&f->errs, "missing required value", "[auth] shared_secret"));
}

static void config_load__cloudtasks_oidc_without_audience__both_oidc_values_reported(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, CT_NO_AUTH_TEXT), -1);
    assert_int_equal(f->errs.n, 2);
    assert_non_null(find_error(&f->errs, "missing required value", "[auth] audience"));
    assert_non_null(find_error(&f->errs, "missing required value", "[auth] service_account"));
}

/* ---- environment ----------------------------------------------------------------- */

static void config_load__env_log_level__beats_file(void **state)
{
    struct fixture *f = *state;
    env_set("FOLLOWUPD_LOG_LEVEL", "debug");
    assert_int_equal(load_text(f, "[log]\nlevel = error\n" REQUIRED_TEXT), 0);
    assert_no_errors(f);
    assert_int_equal(f->cfg.log_level, LOG_LEVEL_DEBUG);
}

static void config_load__env_schemas__replace_file_list(void **state)
{
    struct fixture *f = *state;
    env_set("FOLLOWUPD_DATABASE_SCHEMAS", "tenant_x, tenant_y");
    assert_int_equal(load_text(f, REQUIRED_TEXT), 0);
    assert_strlist(&f->cfg.db_schemas, "tenant_x", "tenant_y");
}

static void config_load__env_only_without_file__usable(void **state)
{
    struct fixture *f = *state;
    env_set("FOLLOWUPD_DATABASE_CONNINFO", "dbname=x");
    env_set("FOLLOWUPD_DATABASE_SCHEMAS", "s");
    env_set("FOLLOWUPD_VOICE_AGENT_BASE_URL", "http://va");
    env_set("FOLLOWUPD_QUEUE_BACKEND", "local");
    env_set("FOLLOWUPD_HTTP_MAX_CONNECTIONS", "12");
    assert_int_equal(config_load(&f->cfg, NULL, fake_getenv, &f->errs), 0);
    assert_int_equal(f->cfg.http_max_connections, 12);
    assert_int_equal(f->cfg.queue_backend, QUEUE_LOCAL);
}

static void config_load__boolean_spellings__parsed_from_file_and_env(void **state)
{
    struct fixture *f = *state;
    static const struct { const char *text; bool want; } cases[] = {
        {"off", false}, {"OFF", false}, {"false", false}, {"no", false}, {"0", false},
        {"on", true}, {"True", true}, {"yes", true}, {"1", true},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "[database]\nprepared_statements = %s\n%s", cases[i].text, REQUIRED_TEXT);
        config_errors_free(&f->errs);
        assert_int_equal(load_text(f, text), 0);
        if (f->cfg.db_prepared_statements != cases[i].want) fail_msg("prepared_statements = %s", cases[i].text);
    }
    env_set("FOLLOWUPD_DATABASE_PREPARED_STATEMENTS", "off");
    config_errors_free(&f->errs);
    assert_int_equal(load_text(f, "[database]\nprepared_statements = on\n" REQUIRED_TEXT), 0);
    assert_false(f->cfg.db_prepared_statements);
}

static void config_load__env_bad_value__error_names_variable(void **state)
{
    struct fixture *f = *state;
    env_set("FOLLOWUPD_HTTP_MAX_CONNECTIONS", "lots");
    assert_int_equal(load_text(f, REQUIRED_TEXT), -1);
    assert_int_equal(f->errs.n, 1);
    assert_non_null(find_error(&f->errs, "FOLLOWUPD_HTTP_MAX_CONNECTIONS", "max_connections"));
}

/* ---- secrets given as files ---------------------------------------------------------- */

static void config_load__secret_file__exactly_one_trailing_newline_stripped(void **state)
{
    struct fixture *f = *state;
    static const struct {
        const char *content;
        const char *expected;
    } cases[] = {
        {"lad-db", "lad-db"},
        {"lad-db\n", "lad-db"},
        {"lad-db\n\n", "lad-db\n"},
        {"lad-db\r\n", "lad-db"},
        {"lad-db\r", "lad-db\r"},
        {"lad-db\n\r\n", "lad-db\n"},
        {"two\nlines\n", "two\nlines"},
        {" padded \n", " padded "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) { /* a database name: libpq takes any bytes */
        const char *path = write_text(f, cases[i].content);
        char text[1024];
        snprintf(text, sizeof(text), "[database]\nconninfo_file = %s\nschemas = s\n[queue]\nbackend = local\n"
                 "[voice_agent]\nbase_url = http://va\n", path);
        assert_int_equal(load_text(f, text), 0);
        assert_string_equal(f->cfg.db_conninfo, cases[i].expected);
    }
}

static void config_load__relative_secret_file__resolved_in_credentials_directory(void **state)
{
    struct fixture *f = *state;
    const char *dir = make_dir(f);
    static const char conninfo[] = "host=db password=from-credential-dir\n";
    write_file(f, "db-conninfo", conninfo, strlen(conninfo));
    const char *abs = write_text(f, "absolute-token-value\n");
    env_set("CREDENTIALS_DIRECTORY", dir);
    char text[1024];
    snprintf(text, sizeof(text),
             "[database]\nconninfo_file = db-conninfo\nschemas = s\n[queue]\nbackend = local\n"
             "[voice_agent]\nbase_url = http://va\ntoken_file = %s\n",
             abs);
    assert_int_equal(load_text(f, text), 0);
    assert_string_equal(f->cfg.db_conninfo, "host=db password=from-credential-dir");
    assert_string_equal(f->cfg.va_token, "absolute-token-value");
}

static void config_load__relative_secret_file_without_credentials_directory__error(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, REQUIRED_TEXT "[voice_agent]\ntoken_file = followupd-no-such-token\n"), -1);
    assert_int_equal(f->errs.n, 1);
    assert_has_error_at(f, 15, "token_file");
    assert_non_null(find_error(&f->errs, "followupd-no-such-token"));
}

static void config_load__secret_file_is_directory__error(void **state)
{
    struct fixture *f = *state;
    const char *dir = make_dir(f);
    char text[1024];
    snprintf(text, sizeof(text), REQUIRED_TEXT "[voice_agent]\ntoken_file = %s\n", dir);
    assert_int_equal(load_text(f, text), -1);
    assert_has_error_at(f, 15, "token_file");
}

static void config_load__secret_and_secret_file_in_file__error(void **state)
{
    struct fixture *f = *state;
    const char *tok = write_text(f, "file-token-value\n");
    char text[1024];
    snprintf(text, sizeof(text), "[voice_agent]\ntoken = inline-token-value\ntoken_file = %s\n" REQUIRED_TEXT, tok);
    assert_int_equal(load_text(f, text), -1);
    assert_int_equal(f->errs.n, 1);
    assert_has_error_at(f, 3, "token_file");
    assert_no_error_contains(&f->errs, "inline-token-value");
    assert_no_error_contains(&f->errs, "file-token-value");
}

static void config_load__secret_and_secret_file_in_env__error(void **state)
{
    struct fixture *f = *state;
    const char *tok = write_text(f, "file-token-value\n");
    env_set("FOLLOWUPD_VOICE_AGENT_TOKEN", "env-token-value");
    env_set("FOLLOWUPD_VOICE_AGENT_TOKEN_FILE", tok);
    assert_int_equal(load_text(f, REQUIRED_TEXT), -1);
    assert_int_equal(f->errs.n, 1);
    assert_non_null(find_error(&f->errs, "FOLLOWUPD_VOICE_AGENT_TOKEN", "FOLLOWUPD_VOICE_AGENT_TOKEN_FILE"));
    assert_no_error_contains(&f->errs, "env-token-value");
    assert_no_error_contains(&f->errs, "file-token-value");
}

static void config_load__env_secret_file__replaces_file_value(void **state)
{
    struct fixture *f = *state;
    const char *ci = write_text(f, "host=db password=from-env-file\n");
    env_set("FOLLOWUPD_DATABASE_CONNINFO_FILE", ci);
    assert_int_equal(load_text(f, REQUIRED_TEXT), 0);
    assert_no_errors(f);
    assert_string_equal(f->cfg.db_conninfo, "host=db password=from-env-file");
}

static void config_load__secret_errors__never_contain_the_secret(void **state)
{
    struct fixture *f = *state;
    /* given twice, too short, K and K_file, NUL byte in the file, misspelt key, no section */
    const char *nul = write_file(f, NULL, "abc\0nul-secret-tail\n", 20);
    char text[2048];
    snprintf(text, sizeof(text),
             "conninfo = password=outside-section-pw\n"
             "[auth]\n"
             "mode = shared_secret\n"
             "shared_secret = short-secret1\n"
             "[voice_agent]\n"
             "token = first-token-value\n"
             "token = second-token-value\n"
             "[database]\n"
             "conninfo_file = %s\n"
             "schemas = s\n"
             "[auth]\n"
             "sharedsecret = misspelt-secret-value\n"
             "[voice_agent]\nbase_url = http://va\n",
             nul);
    assert_int_equal(load_text(f, text), -1);
    assert_true(f->errs.n >= 5);
    assert_has_error_at(f, 1, "conninfo");
    assert_has_error_at(f, 7, "token");
    assert_has_error_at(f, 9, "conninfo_file");
    assert_has_error_at(f, 12, "sharedsecret");
    assert_non_null(find_error(&f->errs, "shared_secret", "16 bytes"));
    static const char *const secrets[] = {"outside-section-pw", "short-secret1", "first-token-value",
                                          "second-token-value", "nul-secret-tail", "misspelt-secret-value"};
    for (size_t i = 0; i < sizeof(secrets) / sizeof(secrets[0]); i++)
        assert_no_error_contains(&f->errs, secrets[i]);
}

/* ---- schemas and lists ----------------------------------------------------------------- */

static void config_load__invalid_schema_names__rejected(void **state)
{
    struct fixture *f = *state;
    char long64[65], text[1024];
    memset(long64, 'a', 64);
    long64[64] = '\0';
    const char *const bad[] = {"a-b", "1abc", "x;drop", "tenant_a,x;drop table y", long64, "a b",
                               "\"quoted\"", "schema.table", "tenant_a,tenant_a", "t1, t2, t1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        snprintf(text, sizeof(text), "[queue]\nbackend = local\n[database]\nconninfo = dbname=x\nschemas = %s\n"
                                     "[voice_agent]\nbase_url = http://va\n", bad[i]);
        config_errors_free(&f->errs);
        if (load_text(f, text) != -1) fail_msg("accepted schemas = %s", bad[i]);
        assert_has_error_at(f, 5, "schemas");
    }
}

static void config_load__valid_schema_names__accepted(void **state)
{
    struct fixture *f = *state;
    char long63[64], text[1024];
    memset(long63, 'b', 63);
    long63[63] = '\0';
    snprintf(text, sizeof(text), REQUIRED_TEXT "[database]\n");
    env_set("FOLLOWUPD_DATABASE_SCHEMAS", "_x,Tenant_1,t2");
    assert_int_equal(load_text(f, text), 0);
    assert_strlist(&f->cfg.db_schemas, "_x", "Tenant_1", "t2");
    fake_env.value[0] = long63;
    assert_int_equal(load_text(f, text), 0);
    assert_strlist(&f->cfg.db_schemas, long63);
}

static void config_load__empty_list_items__rejected(void **state)
{
    struct fixture *f = *state;
    const char *const bad[] = {"a,,b", ",a", "a,", " , ", ","};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "[followup]\nbooking_types = %s\n" REQUIRED_TEXT, bad[i]);
        config_errors_free(&f->errs);
        if (load_text(f, text) != -1) fail_msg("accepted booking_types = '%s'", bad[i]);
        assert_has_error_at(f, 2, "booking_types");
    }
}

static void config_is_valid_identifier__edge_cases__classified(void **state)
{
    (void)state;
    assert_true(config_is_valid_identifier("a"));
    assert_true(config_is_valid_identifier("_"));
    assert_true(config_is_valid_identifier("A_1"));
    assert_false(config_is_valid_identifier(""));
    assert_false(config_is_valid_identifier("9"));
    assert_false(config_is_valid_identifier("a$"));
    assert_false(config_is_valid_identifier("caf\xC3\xA9"));
}

static void strlist_contains__member_and_non_member__found_or_not(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, REQUIRED_TEXT), 0);
    assert_true(strlist_contains(&f->cfg.followup_booking_types, "auto_followup"));
    assert_false(strlist_contains(&f->cfg.followup_booking_types, "auto"));
    assert_false(strlist_contains(&f->cfg.db_schemas, ""));
}

/* ---- reload helpers ---------------------------------------------------------------------- */

#define CHANGED_TEXT                                                                              \
    "[http]\nlisten = 0.0.0.0:9999\n[database]\nconninfo_file = %s\nschemas = tenant_a, tenant_b\n" \
    "[queue]\nbackend = local\n[log]\nlevel = debug\n[voice_agent]\nbase_url = http://other\n"     \
    "token = new-token-value\n[followup]\nsweep_interval_s = 5\n"                                \
    "[cloudtasks]\nproject = my-project\nlocation = europe-west1\n"

static void load_pair(struct fixture *f, struct config *running, struct config *next)
{
    assert_int_equal(load_text(f, REQUIRED_TEXT), 0);
    *running = f->cfg;
    memset(&f->cfg, 0, sizeof(f->cfg));
    const char *ci = write_text(f, "host=other dbname=lad\n");
    char text[1024];
    snprintf(text, sizeof(text), CHANGED_TEXT, ci);
    assert_int_equal(load_text(f, text), 0);
    *next = f->cfg;
    memset(&f->cfg, 0, sizeof(f->cfg));
    assert_no_errors(f);
}

static bool names_contain(const char **names, int n, const char *s)
{
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], s) == 0) return true;
    return false;
}

static void config_diff_static__static_keys_changed__listed_reloadable_not(void **state)
{
    struct fixture *f = *state;
    struct config running, next;
    load_pair(f, &running, &next);
    const char *names[32];
    int n = config_diff_static(&running, &next, names, 32);
    assert_int_equal(n, 4);
    assert_true(names_contain(names, n, "listen"));
    assert_true(names_contain(names, n, "conninfo"));
    assert_true(names_contain(names, n, "schemas"));
    assert_true(names_contain(names, n, "backend"));
    assert_false(names_contain(names, n, "level"));
    assert_false(names_contain(names, n, "base_url"));

    assert_int_equal(config_diff_static(&running, &running, names, 32), 0);
    assert_int_equal(config_diff_static(&running, &next, names, 2), 4); /* counts beyond max */
    config_free(&running);
    config_free(&next);
}

static void config_adopt_static__after_reload__running_static_values_kept(void **state)
{
    struct fixture *f = *state;
    struct config running, next;
    load_pair(f, &running, &next);
    config_adopt_static(&next, &running);
    /* static keys: next now carries what was running */
    assert_string_equal(next.http_listen, "127.0.0.1:8080");
    assert_string_equal(next.db_conninfo, "host=127.0.0.1 dbname=lad user=followupd");
    assert_strlist(&next.db_schemas, "tenant_a");
    assert_int_equal(next.queue_backend, QUEUE_CLOUDTASKS);
    /* reloadable keys: the new values */
    assert_int_equal(next.log_level, LOG_LEVEL_DEBUG);
    assert_string_equal(next.va_base_url, "http://other");
    assert_string_equal(next.va_token, "new-token-value");
    assert_int_equal(next.followup_sweep_interval_s, 5);
    /* the discarded values moved to `running`, freed with it (leak-checked under ASan) */
    assert_string_equal(running.http_listen, "0.0.0.0:9999");
    assert_strlist(&running.db_schemas, "tenant_a", "tenant_b");
    config_free(&running);
    config_free(&next);
}

/* ---- secrets reach the logger ------------------------------------------------------------- */

static void assert_redacted(struct logger *lg, const char *secret)
{
    char msg[512];
    snprintf(msg, sizeof(msg), "connect failed: %s (again: %s)", secret, secret);
    const char *fields[] = {"error", secret, "detail", msg, NULL};
    char *line = log_format_line(lg, LOG_LEVEL_ERROR, NULL, fields, msg);
    assert_non_null(line);
    if (strstr(line, secret) != NULL) fail_msg("secret '%s' in log line: %s", secret, line);
    assert_non_null(strstr(line, "[REDACTED]"));
    free(line);
}

static void config_register_secrets__password_token_shared_secret__redacted(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[database]\nconninfo = host=db user=u password=Db-Pa55word dbname=lad\n"
                                  "schemas = s\n[queue]\nbackend = local\n[auth]\nmode = shared_secret\n"
                                  "shared_secret = shared-secret-0123456789\n"
                                  "[voice_agent]\nbase_url = http://va\ntoken = va-bearer-token-xyz\n"),
                     0);
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_DEBUG, -1);
    config_register_secrets(&f->cfg, &lg);
    assert_redacted(&lg, "Db-Pa55word");
    assert_redacted(&lg, "va-bearer-token-xyz");
    assert_redacted(&lg, "shared-secret-0123456789");
    assert_redacted(&lg, "host=db user=u password=Db-Pa55word dbname=lad");
    /* a non-secret value stays readable */
    char *line = log_format_line(&lg, LOG_LEVEL_INFO, NULL, NULL, "schema s on host db");
    assert_non_null(strstr(line, "schema s on host db"));
    free(line);
    logger_free(&lg);
}

static void config_register_secrets__uri_conninfo__password_redacted(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[database]\nconninfo = postgresql://u:Uri-Pa55word@db:5432/lad\n"
                                  "schemas = s\n[queue]\nbackend = local\n[voice_agent]\nbase_url = http://va\n"),
                     0);
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_DEBUG, -1);
    config_register_secrets(&f->cfg, &lg);
    assert_redacted(&lg, "Uri-Pa55word");
    logger_free(&lg);
}

/* ---- values that may be secrets: checked, never echoed ------------------------------------ */

#define MARK "Qv7zKwJxTrYp"   /* a password no message shares 4 bytes with */
#define LOCAL_REST "schemas = s\n[queue]\nbackend = local\n[voice_agent]\nbase_url = http://va\n"

static const struct {
    const char *conninfo;
    const char *problem;
} bad_conninfos[] = {
    {"postgresql://user:Qv7z%zzKwJxTrYp@127.0.0.1/db", "invalid percent-encoding in URI"},
    {"host=127.0.0.1 password=Qv7zKw JxTrYp dbname=x", "missing '=' after a keyword"},
    {"host=127.0.0.1 password='Qv7zKwJxTrYp", "unterminated quoted string"},
    {"host=127.0.0.1 password=Qv7zKw JxTrYp=1", "unknown option keyword"},
};

static void assert_error_names_without_mark(struct fixture *f, const char *key, const char *problem)
{
    const char *e = find_error(&f->errs, key, problem);
    if (e == NULL) {
        dump_errors(&f->errs);
        fail_msg("no error naming %s and %s", key, problem);
    }
    for (int i = 0; i < f->errs.n; i++) assert_no_secret_piece(f->errs.msgs[i], MARK, "config error");
}

static void config_load__bad_conninfo_inline_file_or_env__problem_named_value_never_echoed(void **state)
{
    struct fixture *f = *state;
    for (size_t i = 0; i < sizeof(bad_conninfos) / sizeof(bad_conninfos[0]); i++) {
        char text[1024];
        snprintf(text, sizeof(text), "[database]\nconninfo = %s\n" LOCAL_REST, bad_conninfos[i].conninfo);
        assert_int_equal(load_text(f, text), -1);
        assert_error_names_without_mark(f, "[database] conninfo:", bad_conninfos[i].problem);
        assert_int_equal(f->errs.n, 1); /* refused, so not "missing" as well */
        assert_null(f->cfg.db_conninfo);
        config_errors_free(&f->errs);

        const char *path = write_text(f, bad_conninfos[i].conninfo);
        snprintf(text, sizeof(text), "[database]\nconninfo_file = %s\n" LOCAL_REST, path);
        assert_int_equal(load_text(f, text), -1);
        assert_error_names_without_mark(f, path, bad_conninfos[i].problem);
        assert_non_null(find_error(&f->errs, "[database] conninfo_file"));
        config_errors_free(&f->errs);

        memset(&fake_env, 0, sizeof(fake_env));
        env_set("FOLLOWUPD_DATABASE_CONNINFO", bad_conninfos[i].conninfo);
        assert_int_equal(load_text(f, "[database]\n" LOCAL_REST), -1);
        assert_error_names_without_mark(f, "env FOLLOWUPD_DATABASE_CONNINFO", bad_conninfos[i].problem);
        config_errors_free(&f->errs);

        memset(&fake_env, 0, sizeof(fake_env));
        env_set("FOLLOWUPD_DATABASE_CONNINFO_FILE", path);
        assert_int_equal(load_text(f, "[database]\n" LOCAL_REST), -1);
        assert_error_names_without_mark(f, "env FOLLOWUPD_DATABASE_CONNINFO_FILE", bad_conninfos[i].problem);
        config_errors_free(&f->errs);
        memset(&fake_env, 0, sizeof(fake_env));
    }
}

static void config_load__url_with_userinfo__refused_credentials_not_echoed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "[database]\nconninfo = dbname=x\nschemas = s\n[queue]\nbackend = local\n"
                                  "[voice_agent]\nbase_url = https://agent:" MARK "@va.example.com/\n"
                                  "[cloudtasks]\nendpoint = https://" MARK "@tasks.example.com\n"),
                     -1);
    assert_has_error_at(f, 7, "base_url");
    assert_has_error_at(f, 9, "endpoint");
    assert_error_names_without_mark(f, "base_url", "must not contain '@'");
    assert_non_null(find_error(&f->errs, "https://[REDACTED]@va.example.com/"));
}

static void config_load__token_or_shared_secret_with_control_bytes__refused_without_echo(void **state)
{
    struct fixture *f = *state;
    const char *token = write_text(f, MARK "\r\nX-Injected: 1\n");
    const char *secret = write_text(f, MARK "0123456789 \n");
    char text[1024];
    snprintf(text, sizeof(text),
             "[database]\nconninfo = dbname=x\n" LOCAL_REST "token_file = %s\n[auth]\nmode = shared_secret\n"
             "shared_secret_file = %s\n",
             token, secret);
    assert_int_equal(load_text(f, text), -1);
    assert_error_names_without_mark(f, "[voice_agent] token_file", "Bearer token");
    assert_error_names_without_mark(f, "[auth] shared_secret_file", "control characters");
    assert_null(f->cfg.va_token);
    config_errors_free(&f->errs);
    assert_int_equal(load_text(f, "[database]\nconninfo = dbname=x\n" LOCAL_REST "token = " MARK " two\n"), -1);
    assert_error_names_without_mark(f, "[voice_agent] token:", "without spaces");
}

static void config_load__stray_line_not_a_name__not_echoed(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(load_text(f, "Qv7z%zzKwJx = 1\n[database]\nconninfo = dbname=x\nQv7zKw JxTrYp = 1\n"
                                  "[Qv7z KwJxTrYp]\n" LOCAL_REST),
                     -1);
    assert_has_error_at(f, 1, "not shown");
    assert_has_error_at(f, 4, "not shown");
    assert_has_error_at(f, 5, "unknown section");
    for (int i = 0; i < f->errs.n; i++) assert_no_secret_piece(f->errs.msgs[i], MARK, "config error");
}

static void config_load_logged__secret_pasted_into_other_key__registered_before_error_logged(void **state)
{
    struct fixture *f = *state;
    char text[1024];
    snprintf(text, sizeof(text),
             "[database]\nconninfo = host=db password=%s\n" LOCAL_REST "token = %s-tok\n[http]\nlisten = %s\n"
             "public_url = %s-tok\n",
             MARK, MARK, MARK, MARK);
    const char *conf = write_text(f, text);
    const char *out = write_text(f, "");
    int fd = open(out, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    struct logger lg;
    logger_init(&lg, LOG_LEVEL_INFO, fd);
    struct config cfg;
    assert_int_equal(config_load_logged(&cfg, conf, &lg, "configuration error"), -1);
    config_free(&cfg);
    logger_free(&lg);
    close(fd);
    char buf[4096] = "";
    FILE *in = fopen(out, "r");
    assert_non_null(in);
    size_t n = fread(buf, 1, sizeof(buf) - 1, in);
    fclose(in);
    buf[n] = '\0';
    assert_non_null(strstr(buf, "\"msg\":\"configuration error\""));
    assert_non_null(strstr(buf, "listen = '[REDACTED]'"));
    assert_no_secret_piece(buf, MARK, "log");
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(config_load__required_keys_only__documented_defaults),
        T(config_load__notify_window_shorter_than_the_sweep__error_poll_mode_or_zero_fine),
        T(config_load__example_file_as_shipped__reports_only_missing_required),
        T(config_load__example_defaults_uncommented__same_as_builtin),
        T(config_load__google_application_credentials__default_credentials),
        T(config_load__comments_blank_lines_whitespace_crlf__parsed),
        T(config_load__value_with_equals_hash_semicolon__kept_verbatim),
        T(config_load__key_given_twice__error_names_both_lines),
        T(config_load__unknown_key__error_names_file_line_and_key),
        T(config_load__key_of_other_section__unknown_key),
        T(config_load__unknown_section__one_error_names_file_line_and_section),
        T(config_load__malformed_lines__each_reported_with_line),
        T(config_load__malformed_section_header__its_keys_not_misfiled),
        T(config_load__int_out_of_range__error_states_bounds),
        T(config_load__config_path_is_directory__error),
        T(config_load__bad_values__error_names_file_line_and_key),
        T(config_load__valid_listen_forms__accepted),
        T(config_load__int_bounds__inclusive),
        T(config_load__many_problems__all_reported_at_once),
        T(config_load__missing_file__error_names_path),
        T(config_load__empty_file_cloudtasks_oidc__each_missing_value_reported),
        T(config_load__required_values_empty__reported_missing),
        T(config_load__local_backend__cloudtasks_and_oidc_values_optional),
        T(config_load__local_backend_without_common_values__those_reported),
        T(config_load__cloudtasks_shared_secret_mode__secret_required_not_oidc_values),
        T(config_load__local_backend_shared_secret_mode__secret_required),
        T(config_load__cloudtasks_oidc_without_audience__both_oidc_values_reported),
        T(config_load__env_log_level__beats_file),
        T(config_load__env_schemas__replace_file_list),
        T(config_load__env_only_without_file__usable),
        T(config_load__boolean_spellings__parsed_from_file_and_env),
        T(config_load__env_bad_value__error_names_variable),
        T(config_load__secret_file__exactly_one_trailing_newline_stripped),
        T(config_load__relative_secret_file__resolved_in_credentials_directory),
        T(config_load__relative_secret_file_without_credentials_directory__error),
        T(config_load__secret_file_is_directory__error),
        T(config_load__secret_and_secret_file_in_file__error),
        T(config_load__secret_and_secret_file_in_env__error),
        T(config_load__env_secret_file__replaces_file_value),
        T(config_load__secret_errors__never_contain_the_secret),
        T(config_load__invalid_schema_names__rejected),
        T(config_load__valid_schema_names__accepted),
        T(config_load__empty_list_items__rejected),
        T(config_is_valid_identifier__edge_cases__classified),
        T(strlist_contains__member_and_non_member__found_or_not),
        T(config_diff_static__static_keys_changed__listed_reloadable_not),
        T(config_adopt_static__after_reload__running_static_values_kept),
        T(config_register_secrets__password_token_shared_secret__redacted),
        T(config_register_secrets__uri_conninfo__password_redacted),
        T(config_load__bad_conninfo_inline_file_or_env__problem_named_value_never_echoed),
        T(config_load__url_with_userinfo__refused_credentials_not_echoed),
        T(config_load__token_or_shared_secret_with_control_bytes__refused_without_echo),
        T(config_load__stray_line_not_a_name__not_echoed),
        T(config_load_logged__secret_pasted_into_other_key__registered_before_error_logged),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
