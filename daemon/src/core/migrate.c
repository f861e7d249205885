/*
 * core/migrate — see the header.  This is a command-line mode: blocking I/O
 * is fine here (no event loop runs).
 */
#include "core/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/cli_output.h"
#include "core/config.h"
#include "shared/db/db_migrate.h"
#include "utils/log.h"

#define MAX_SQL_FILE_BYTES (4u << 20)

struct sql_file {
    char *name; /* "001_task_columns.sql" */
    char *text;
    size_t len;
};

struct file_set {
    struct sql_file *files;
    int n;
};

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Keep the canonical form of a directory that exists (for the logs). */
static void canonicalize(char *dir, size_t cap)
{
    char real[PATH_MAX];
    if (realpath(dir, real) != NULL) snprintf(dir, cap, "%s", real);
}

static bool has_layout(const char *dir)
{
    char a[PATH_MAX], b[PATH_MAX];
    snprintf(a, sizeof(a), "%s/migrations", dir);
    snprintf(b, sizeof(b), "%s/rollback", dir);
    return is_dir(a) && is_dir(b);
}

static void append(char *buf, size_t cap, const char *item)
{
    size_t n = strlen(buf);
    snprintf(buf + n, cap - n, "%s%s", n > 0 ? ", " : "", item);
}

int migrate_resolve_sql_dir(const char *given, const char *exe_path, char *out, size_t cap, char *tried,
                            size_t tried_cap)
{
    tried[0] = '\0';
    if (given != NULL) {
        snprintf(out, cap, "%s", given);
        if (has_layout(out)) return 0;
        append(tried, tried_cap, out);
        return -1;
    }
    if (exe_path != NULL) { /* <prefix>/bin/followupd -> <prefix>/share/followupd/sql */
        char bin_dir[PATH_MAX];
        snprintf(bin_dir, sizeof(bin_dir), "%s", exe_path);
        char *slash = strrchr(bin_dir, '/');
        if (slash != NULL) {
            *slash = '\0';
            snprintf(out, cap, "%s/../share/followupd/sql", bin_dir);
            if (has_layout(out)) {
                canonicalize(out, cap);
                return 0;
            }
            append(tried, tried_cap, out);
        }
    }
    snprintf(out, cap, "./sql");
    if (has_layout(out)) {
        canonicalize(out, cap);
        return 0;
    }
    append(tried, tried_cap, out);
    return -1;
}

static char *read_file(const char *path, size_t *len, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return NULL;
    }
    char *buf = malloc(MAX_SQL_FILE_BYTES + 1);
    size_t n = buf != NULL ? fread(buf, 1, MAX_SQL_FILE_BYTES + 1, f) : 0;
    bool bad = buf == NULL || ferror(f) || n > MAX_SQL_FILE_BYTES;
    fclose(f);
    if (bad) {
        snprintf(err, errlen, "cannot read %s (unreadable or larger than %u bytes)", path, MAX_SQL_FILE_BYTES);
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(((const struct sql_file *)a)->name, ((const struct sql_file *)b)->name);
}

static void files_free(struct file_set *fs)
{
    for (int i = 0; i < fs->n; i++) {
        free(fs->files[i].name);
        free(fs->files[i].text);
    }
    free(fs->files);
    fs->files = NULL;
    fs->n = 0;
}

static bool is_sql_name(const char *name)
{
    size_t n = strlen(name);
    return name[0] != '.' && n > 4 && strcmp(name + n - 4, ".sql") == 0;
}

/* Every *.sql file of dir, sorted by name (reversed when asked), read into memory. */
static int load_files(const char *dir, bool reverse, struct file_set *fs, char *err, size_t errlen)
{
    DIR *d = opendir(dir);
    if (d == NULL) {
        snprintf(err, errlen, "cannot open %s: %s", dir, strerror(errno));
        return -1;
    }
    int rc = 0;
    for (struct dirent *e = readdir(d); e != NULL && rc == 0; e = readdir(d)) {
        if (!is_sql_name(e->d_name)) continue;
        struct sql_file *grown = realloc(fs->files, sizeof(*grown) * (size_t)(fs->n + 1));
        if (grown == NULL) {
            rc = -1;
            snprintf(err, errlen, "out of memory");
            break;
        }
        fs->files = grown;
        struct sql_file *f = &fs->files[fs->n];
        memset(f, 0, sizeof(*f));
        if ((f->name = strdup(e->d_name)) == NULL) {
            rc = -1;
            snprintf(err, errlen, "out of memory");
            break;
        }
        fs->n++;
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if ((f->text = read_file(path, &f->len, err, errlen)) == NULL) rc = -1;
    }
    closedir(d);
    if (rc == 0 && fs->n == 0) {
        snprintf(err, errlen, "no .sql files in %s", dir);
        rc = -1;
    }
    if (rc != 0) return -1;
    qsort(fs->files, (size_t)fs->n, sizeof(*fs->files), by_name);
    for (int i = 0; reverse && i < fs->n / 2; i++) {
        struct sql_file t = fs->files[i];
        fs->files[i] = fs->files[fs->n - 1 - i];
        fs->files[fs->n - 1 - i] = t;
    }
    return 0;
}

static long elapsed_ms(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0->tv_sec) * 1000L + (t1.tv_nsec - t0->tv_nsec) / 1000000L;
}

/* "line N: message" → N (0 when the error names no line). */
static int error_line(const char *err)
{
    int line = 0;
    return sscanf(err, "line %d:", &line) == 1 ? line : 0;
}

/* The NOTIFY triggers as configured: booking types and notify_within_s, or none in poll mode. */
static int install_capture(struct cli_output *o, struct db_migrate_session *s, const char *schema,
                           const struct config *cfg)
{
    char types[1024], within[16], err[768] = "[followup] booking_types too long";
    struct log_ctx ctx = {.schema = schema};
    bool notify = cfg->capture_mode == CAPTURE_NOTIFY;
    if (config_join_list(&cfg->followup_booking_types, types, sizeof(types)) != 0 ||
        db_migrate_install_capture(s, types, cfg->capture_notify_within_s, notify, err, sizeof(err)) != 0) {
        char msg[128];
        snprintf(msg, sizeof(msg), "cannot install the capture triggers in schema %s", schema);
        cli_say(o, LOG_LEVEL_ERROR, &ctx, (const char *[]){"error", err, NULL}, msg, "error: %s: %s", msg, err);
        return -1;
    }
    snprintf(within, sizeof(within), "%d", cfg->capture_notify_within_s);
    if (notify)
        cli_say(o, LOG_LEVEL_INFO, &ctx, (const char *[]){"booking_types", types, "notify_within_s", within, NULL},
                "capture triggers installed", "%s: capture triggers installed (booking types %s, notify_within_s %s)",
                schema, types, within);
    else
        cli_say(o, LOG_LEVEL_INFO, &ctx, NULL, "capture mode poll: NOTIFY triggers removed",
                "%s: capture mode poll: NOTIFY triggers removed", schema);
    return 0;
}

/* A failed script: `file:line: schema S: error` in plain lines. */
static void say_script_failed(struct cli_output *o, const char *dir, const char *schema, const char *file,
                              const char *direction, const char *err)
{
    char msg[256];
    snprintf(msg, sizeof(msg), "migration failed in schema %s, file %s", schema, file);
    int line = error_line(err);
    const char *detail = line > 0 ? strchr(err, ':') + 1 : err;
    while (*detail == ' ') detail++;
    char place[32] = "";
    if (line > 0) snprintf(place, sizeof(place), ":%d", line);
    cli_say(o, LOG_LEVEL_ERROR, &(struct log_ctx){.schema = schema},
            (const char *[]){"file", file, "direction", direction, "error", err, NULL}, msg, "%s/%s%s: schema %s: %s",
            dir, file, place, schema, detail);
}

/* Apply every file to one schema. 0, or -1 (reported with schema and file). */
static int migrate_schema(struct cli_output *o, struct db_migrate_session *s, const char *schema,
                          const char *dir, const struct file_set *fs, const char *direction, const struct config *cfg)
{
    char err[768];
    struct log_ctx ctx = {.schema = schema};
    if (db_migrate_use_schema(s, schema, err, sizeof(err)) != 0) {
        cli_say(o, LOG_LEVEL_ERROR, &ctx, (const char *[]){"error", err, NULL}, "cannot select schema",
                "error: cannot select schema %s: %s", schema, err);
        return -1;
    }
    for (int i = 0; i < fs->n; i++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        int statements = 0;
        int rc = db_migrate_run_script(s, fs->files[i].text, fs->files[i].len, &statements, err, sizeof(err));
        char ms[32], count[16];
        snprintf(ms, sizeof(ms), "%ld", elapsed_ms(&t0));
        snprintf(count, sizeof(count), "%d", statements);
        if (rc != 0) {
            say_script_failed(o, dir, schema, fs->files[i].name, direction, err);
            return -1;
        }
        cli_say(o, LOG_LEVEL_INFO, &ctx,
                (const char *[]){"file", fs->files[i].name, "direction", direction, "statements", count,
                                 "duration_ms", ms, NULL},
                "applied", "%s: %s applied (%s statements, %s ms)", schema, fs->files[i].name, count, ms);
    }
    if (strcmp(direction, "migrate") == 0 && install_capture(o, s, schema, cfg) != 0) return -1;
    char files[16];
    snprintf(files, sizeof(files), "%d", fs->n);
    cli_say(o, LOG_LEVEL_INFO, &ctx, (const char *[]){"files", files, "direction", direction, NULL}, "schema done",
            "%s: done (%s files)", schema, files);
    return 0;
}

/* The SQL files of the direction, read from the resolved directory (into sub). 0, or -1 (reported). */
static int load_scripts(struct cli_output *o, const struct migrate_opts *opts, char *sub, size_t cap,
                        struct file_set *fs)
{
    char exe[PATH_MAX], dir[PATH_MAX], tried[3 * PATH_MAX], err[768];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0) exe[n] = '\0';
    if (migrate_resolve_sql_dir(opts->sql_dir, n > 0 ? exe : NULL, dir, sizeof(dir), tried, sizeof(tried)) != 0) {
        cli_say(o, LOG_LEVEL_ERROR, NULL, (const char *[]){"tried", tried, NULL},
                "no SQL directory (with migrations/ and rollback/) found; use --sql-dir",
                "error: no SQL directory with migrations/ and rollback/ found (tried %s); use --sql-dir", tried);
        return -1;
    }
    snprintf(sub, cap, "%s/%s", dir, opts->rollback ? "rollback" : "migrations");
    if (load_files(sub, opts->rollback, fs, err, sizeof(err)) != 0) {
        cli_say(o, LOG_LEVEL_ERROR, NULL, (const char *[]){"error", err, NULL}, "cannot read the SQL files",
                "error: cannot read the SQL files: %s", err);
        return -1;
    }
    return 0;
}

static int run(struct cli_output *o, const struct migrate_opts *opts, struct config *cfg)
{
    char sub[PATH_MAX + 16], err[768];
    struct file_set fs = {0};
    if (load_scripts(o, opts, sub, sizeof(sub), &fs) != 0) {
        files_free(&fs);
        return -1;
    }
    const char *direction = opts->rollback ? "rollback" : "migrate";
    char nfiles[16], nschemas[16];
    snprintf(nfiles, sizeof(nfiles), "%d", fs.n);
    snprintf(nschemas, sizeof(nschemas), "%d", cfg->db_schemas.n);
    cli_say(o, LOG_LEVEL_INFO, NULL,
            (const char *[]){"sql_dir", sub, "files", nfiles, "schemas", nschemas, "direction", direction, NULL},
            "starting", "followupd: %s %s schema(s) with the %s files of %s",
            opts->rollback ? "rolling back" : "migrating", nschemas, nfiles, sub);
    struct db_migrate_session *s = db_migrate_connect(cfg->db_conninfo, &o->diag, err, sizeof(err));
    int rc = s != NULL ? 0 : -1;
    if (s == NULL)
        cli_say(o, LOG_LEVEL_ERROR, NULL, (const char *[]){"error", err, NULL}, "cannot connect to the database",
                "error: cannot connect to the database: %s", err);
    for (int i = 0; rc == 0 && i < cfg->db_schemas.n; i++)
        rc = migrate_schema(o, s, cfg->db_schemas.items[i], sub, &fs, direction, cfg);
    if (rc == 0)
        cli_say(o, LOG_LEVEL_INFO, NULL, (const char *[]){"schemas", nschemas, "direction", direction, NULL},
                "all schemas done", "followupd: all %s schema(s) %s", nschemas,
                opts->rollback ? "rolled back" : "migrated");
    db_migrate_close(s);
    files_free(&fs);
    return rc;
}

int migrate_run(const struct migrate_opts *opts)
{
    struct cli_output o;
    cli_output_init(&o, opts->json, false);
    struct config cfg;
    int rc = cli_output_load_config(&o, opts->config_path, &cfg);
    if (rc == 0) {
        if (cfg.log_level < LOG_LEVEL_INFO) o.diag.level = cfg.log_level; /* always report progress */
        rc = run(&o, opts, &cfg);
    } else {
        cli_say(&o, LOG_LEVEL_ERROR, NULL, NULL, "cannot migrate: invalid configuration",
                "error: cannot migrate: invalid configuration");
    }
    config_free(&cfg);
    cli_output_free(&o);
    return rc == 0 ? 0 : 1;
}
