/*
 * fuzz/fuzz_config — the configuration loader (config_load): the INI text of
 * the file plus FOLLOWUPD_<SECTION>_<KEY> environment overrides.
 *
 * Input layout: the config file text, then (after the first NUL byte, if any)
 * an environment block of NAME=VALUE lines.  The file text is put in a memfd
 * and loaded through its /proc/self/fd path, so the production fopen/getline
 * path runs unchanged.  The environment lookup sees only the fuzzed block and
 * CREDENTIALS_DIRECTORY, a private temp directory holding two small files
 * ("secret", "conninfo", removed at exit) so that relative *_file keys resolve
 * to real files.
 *
 * Oracles besides the sanitizers: config_load answers 0 exactly when no error
 * was collected; a loaded config differs from itself in no static key and has
 * its secrets registered without trouble; everything is freed (LeakSanitizer).
 */
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include "core/config.h"
#include "fuzz_util.h"

#define MAX_ENV 32

struct env_table {
    char *names[MAX_ENV];
    char *values[MAX_ENV];
    int n;
    char cred_dir[64];
};

/* config_getenv_fn has no context argument: the table is the harness's one global. */
static struct env_table env;

static const char *fuzz_getenv(const char *name)
{
    if (strcmp(name, "CREDENTIALS_DIRECTORY") == 0) return env.cred_dir;
    for (int i = env.n - 1; i >= 0; i--)
        if (strcmp(env.names[i], name) == 0) return env.values[i];
    return NULL;
}

static void env_parse(const uint8_t *data, size_t size)
{
    while (size > 0 && env.n < MAX_ENV) {
        const uint8_t *line;
        size_t len;
        fuzz_next_part(&data, &size, '\n', &line, &len);
        const uint8_t *eq = memchr(line, '=', len);
        if (eq == NULL) continue;
        env.names[env.n] = fuzz_cstr(line, (size_t)(eq - line));
        env.values[env.n] = fuzz_cstr(eq + 1, len - (size_t)(eq - line) - 1);
        env.n++;
    }
}

static void env_clear(void)
{
    for (int i = 0; i < env.n; i++) {
        free(env.names[i]);
        free(env.values[i]);
    }
    env.n = 0;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f == NULL || fputs(text, f) < 0 || fclose(f) != 0) abort();
}

static void remove_cred_dir(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/secret", env.cred_dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/conninfo", env.cred_dir);
    unlink(path);
    rmdir(env.cred_dir);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    snprintf(env.cred_dir, sizeof(env.cred_dir), "/tmp/followupd-fuzz-config-XXXXXX");
    if (mkdtemp(env.cred_dir) == NULL) abort();
    atexit(remove_cred_dir); /* libFuzzer ends with exit(); a crash leaves the directory behind */
    write_file(env.cred_dir, "secret", "0123456789abcdef-shared-secret\n");
    write_file(env.cred_dir, "conninfo", "host=127.0.0.1 dbname=x password=pw\n");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *text;
    size_t text_len;
    fuzz_next_part(&data, &size, 0, &text, &text_len);
    env_parse(data, size);

    int fd = memfd_create("followupd-fuzz.conf", MFD_CLOEXEC);
    if (fd < 0 || (text_len > 0 && write(fd, text, text_len) != (ssize_t)text_len)) abort();
    char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);

    struct config cfg;
    struct config_errors errs = {0};
    int rc = config_load(&cfg, path, fuzz_getenv, &errs);
    if ((rc == 0) != (errs.n == 0)) abort();
    for (int i = 0; i < errs.n; i++)
        if (errs.msgs[i] == NULL) abort();
    if (rc == 0) {
        const char *diff[8];
        if (config_diff_static(&cfg, &cfg, diff, 8) != 0) abort();
        struct logger lg;
        fuzz_logger_init(&lg);
        config_register_secrets(&cfg, &lg);
        fuzz_logger_free(&lg);
    }
    config_free(&cfg);
    config_errors_free(&errs);
    close(fd);
    env_clear();
    return 0;
}
