/*
 * bench/src/loadgen — inserts follow-up bookings the way the Node backend does (one autocommit, parameterized
 * INSERT per booking on its own connection; libpq, unnamed statements like node-postgres) and records, per row,
 * when the INSERT was sent and when its commit was acknowledged (CLOCK_REALTIME, µs). Not part of the daemon.
 *
 *   loadgen --schema S --clients 8 --total N            flat out: the clients share a counter to N
 *   loadgen --schema S --clients 8 --rate R --seconds T paced (open loop): row i is due at t0 + i/R, client
 *                                                       i % clients sends it at that moment (or late, recorded)
 *   options: --out FILE (lines "<id> <send_us> <ack_us>"), --tenants K (default 8), --due-in-s X (scheduled_at
 *            = now() + X seconds, default 0: due at once), --due-at-ms T (every row due at the same moment, epoch
 *            milliseconds), --type follow_up
 *
 * scheduled_at has millisecond precision, like every timestamp the Node backend writes (a JavaScript Date).
 *
 * Connection parameters come from the PG* environment. Prints one JSON summary line on stdout:
 * {"rows","errors","t_start_us","t_end_us","seconds","rate","late_max_us"}. Exit 1 on any error.
 */
#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define ID_LEN 36
#define MAX_CLIENTS 64
#define MAX_TENANTS 64

struct row {
    char id[ID_LEN + 1];
    int64_t send_us, ack_us;
};

struct options {
    const char *schema, *out, *type;
    int clients, tenants;
    long total;
    double rate, seconds, due_in_s;
    long long due_at_ms;
};

struct shared {
    const struct options *opt;
    char sql[512];
    char tenants[MAX_TENANTS][ID_LEN + 1];
    struct row *rows;
    long n_rows;
    atomic_long next;
    atomic_long errors;
    atomic_llong late_max_us;
    pthread_barrier_t ready;
    int64_t t0_us;
};

struct client {
    struct shared *sh;
    int index;
};

static int64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static void sleep_until_us(int64_t t_us)
{
    struct timespec ts = {.tv_sec = t_us / 1000000, .tv_nsec = (t_us % 1000000) * 1000};
    while (clock_nanosleep(CLOCK_REALTIME, TIMER_ABSTIME, &ts, NULL) != 0) {
    }
}

static void note_late(struct shared *sh, int64_t late)
{
    long long cur = atomic_load(&sh->late_max_us);
    while (late > cur && !atomic_compare_exchange_weak(&sh->late_max_us, &cur, late)) {
    }
}

/* One INSERT; fills row. Returns 0 or -1. */
static int insert_one(struct shared *sh, PGconn *pg, long i, struct row *row)
{
    char due[32];
    if (sh->opt->due_at_ms > 0) snprintf(due, sizeof(due), "%lld", sh->opt->due_at_ms);
    else snprintf(due, sizeof(due), "%.3f", sh->opt->due_in_s);
    const char *params[2] = {sh->tenants[i % sh->opt->tenants], due};
    row->send_us = now_us();
    PGresult *res = PQexecParams(pg, sh->sql, 2, NULL, params, NULL, NULL, 0);
    row->ack_us = now_us();
    int rc = -1;
    if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
        snprintf(row->id, sizeof(row->id), "%s", PQgetvalue(res, 0, 0));
        rc = 0;
    } else {
        fprintf(stderr, "loadgen: insert failed: %s", PQerrorMessage(pg));
    }
    PQclear(res);
    return rc;
}

static void *client_main(void *arg)
{
    struct client *cl = arg;
    struct shared *sh = cl->sh;
    const struct options *o = sh->opt;
    PGconn *pg = PQconnectdb("application_name=bench_loadgen");
    bool ok = PQstatus(pg) == CONNECTION_OK;
    if (!ok) {
        fprintf(stderr, "loadgen: connect: %s", PQerrorMessage(pg));
        atomic_fetch_add(&sh->errors, 1);
    }
    pthread_barrier_wait(&sh->ready);
    pthread_barrier_wait(&sh->ready); /* main has set t0 */
    if (ok && o->rate > 0) {
        for (long i = cl->index; i < sh->n_rows; i += o->clients) {
            int64_t due = sh->t0_us + (int64_t)((double)i * 1e6 / o->rate);
            int64_t now = now_us();
            if (now < due) sleep_until_us(due);
            else note_late(sh, now - due);
            if (insert_one(sh, pg, i, &sh->rows[i]) != 0) atomic_fetch_add(&sh->errors, 1);
        }
    } else if (ok) {
        for (long i = atomic_fetch_add(&sh->next, 1); i < sh->n_rows; i = atomic_fetch_add(&sh->next, 1))
            if (insert_one(sh, pg, i, &sh->rows[i]) != 0) atomic_fetch_add(&sh->errors, 1);
    }
    PQfinish(pg);
    return NULL;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    *o = (struct options){.clients = 8, .tenants = 8, .type = "follow_up"};
    for (int i = 1; i + 1 < argc; i += 2) {
        const char *k = argv[i], *v = argv[i + 1];
        if (strcmp(k, "--schema") == 0) o->schema = v;
        else if (strcmp(k, "--out") == 0) o->out = v;
        else if (strcmp(k, "--type") == 0) o->type = v;
        else if (strcmp(k, "--clients") == 0) o->clients = atoi(v);
        else if (strcmp(k, "--tenants") == 0) o->tenants = atoi(v);
        else if (strcmp(k, "--total") == 0) o->total = atol(v);
        else if (strcmp(k, "--rate") == 0) o->rate = atof(v);
        else if (strcmp(k, "--seconds") == 0) o->seconds = atof(v);
        else if (strcmp(k, "--due-in-s") == 0) o->due_in_s = atof(v);
        else if (strcmp(k, "--due-at-ms") == 0) o->due_at_ms = atoll(v);
        else return -1;
    }
    if (o->rate > 0 && o->total == 0) o->total = (long)(o->rate * o->seconds);
    if (o->schema == NULL || strpbrk(o->schema, "\"\\") != NULL || strpbrk(o->type, "'\\") != NULL ||
        o->clients < 1 || o->clients > MAX_CLIENTS || o->tenants < 1 || o->tenants > MAX_TENANTS || o->total < 1)
        return -1;
    return 0;
}

static int write_rows(const struct shared *sh, const char *path)
{
    FILE *f = fopen(path, "w");
    if (f == NULL) return -1;
    for (long i = 0; i < sh->n_rows; i++)
        if (sh->rows[i].id[0] != '\0')
            fprintf(f, "%s %lld %lld\n", sh->rows[i].id, (long long)sh->rows[i].send_us, (long long)sh->rows[i].ack_us);
    return fclose(f);
}

int main(int argc, char **argv)
{
    struct options o;
    if (parse_args(argc, argv, &o) != 0) {
        fprintf(stderr, "usage: loadgen --schema S [--clients 8] (--total N | --rate R --seconds T) [--out FILE] "
                        "[--tenants 8] [--due-in-s 0 | --due-at-ms T] [--type follow_up]\n");
        return 2;
    }
    static struct shared sh;
    sh.opt = &o;
    sh.n_rows = o.total;
    sh.rows = calloc((size_t)o.total, sizeof(struct row));
    if (sh.rows == NULL) return 1;
    const char *when = o.due_at_ms > 0 ? "to_timestamp($2::bigint / 1000.0)"
                                        : "date_trunc('milliseconds', now() + make_interval(secs => $2::float8))";
    snprintf(sh.sql, sizeof(sh.sql),
             "INSERT INTO \"%s\".lead_bookings (tenant_id, lead_id, booking_type, booking_source, status, "
             "scheduled_at, timezone, notes) VALUES ($1::uuid, gen_random_uuid(), '%s', 'voice_agent', 'scheduled', "
             "%s, 'Europe/Berlin', 'call back about the demo') RETURNING id",
             o.schema, o.type, when);
    srand((unsigned)now_us());
    for (int t = 0; t < o.tenants; t++)
        snprintf(sh.tenants[t], sizeof(sh.tenants[t]), "%08x-%04x-4%03x-8%03x-%012llx", (unsigned)rand(),
                 (unsigned)rand() & 0xffff, (unsigned)rand() & 0xfff, (unsigned)rand() & 0xfff,
                 ((unsigned long long)rand() << 20 ^ (unsigned long long)rand()) & 0xffffffffffffULL);
    pthread_barrier_init(&sh.ready, NULL, (unsigned)o.clients + 1);
    pthread_t threads[MAX_CLIENTS];
    struct client clients[MAX_CLIENTS];
    for (int c = 0; c < o.clients; c++) {
        clients[c] = (struct client){.sh = &sh, .index = c};
        pthread_create(&threads[c], NULL, client_main, &clients[c]);
    }
    pthread_barrier_wait(&sh.ready);           /* every client connected */
    sh.t0_us = now_us() + 2000;                 /* paced mode: first row 2 ms from now */
    pthread_barrier_wait(&sh.ready);
    int64_t start = now_us();
    for (int c = 0; c < o.clients; c++) pthread_join(threads[c], NULL);
    int64_t end = now_us();
    if (o.out != NULL && write_rows(&sh, o.out) != 0) {
        perror(o.out);
        return 1;
    }
    long errors = atomic_load(&sh.errors);
    double secs = (double)(end - start) / 1e6;
    printf("{\"rows\":%ld,\"errors\":%ld,\"t_start_us\":%lld,\"t_end_us\":%lld,\"seconds\":%.3f,\"rate\":%.1f,"
           "\"late_max_us\":%lld}\n",
           o.total - errors, errors, (long long)start, (long long)end, secs, (double)(o.total - errors) / secs,
           (long long)atomic_load(&sh.late_max_us));
    free(sh.rows);
    return errors == 0 ? 0 : 1;
}
