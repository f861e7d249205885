/*
 * core/metrics — see the header.
 */
#include "core/metrics.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct metric_series {
    const struct metric_family *family;
    char *labels[METRICS_MAX_LABELS];
    double value;                         /* counter/gauge; histogram: sum */
    uint64_t count;                       /* histogram observations */
    uint64_t bucket[METRICS_MAX_BUCKETS]; /* per-bucket (non-cumulative) counts */
};

struct metric_family {
    enum metric_type type;
    char *name, *help;
    char *label_names[METRICS_MAX_LABELS];
    size_t n_labels;
    double bounds[METRICS_MAX_BUCKETS];
    size_t n_buckets;
    struct metric_series **series;
    size_t n_series, cap_series;
};

struct metrics_registry {
    struct metric_family **families;
    size_t n, cap;
};

/* ---- names ---- */

static bool name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
    if (colon && c == ':') return true;
    return !first && c >= '0' && c <= '9';
}

bool metrics_name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0') return false;
    for (const char *p = name; *p != '\0'; p++)
        if (!name_char(*p, p == name, true)) return false;
    return true;
}

bool metrics_label_name_valid(const char *name)
{
    if (name == NULL || name[0] == '\0' || strncmp(name, "__", 2) == 0) return false;
    for (const char *p = name; *p != '\0'; p++)
        if (!name_char(*p, p == name, false)) return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* ---- registry ---- */

struct metrics_registry *metrics_registry_new(void)
{
    return calloc(1, sizeof(struct metrics_registry));
}

static void series_free(struct metric_series *s)
{
    for (size_t i = 0; i < METRICS_MAX_LABELS; i++)
        free(s->labels[i]);
    free(s);
}

static void family_free(struct metric_family *f)
{
    if (f == NULL) return;
    for (size_t i = 0; i < f->n_series; i++)
        series_free(f->series[i]);
    free(f->series);
    for (size_t i = 0; i < f->n_labels; i++)
        free(f->label_names[i]);
    free(f->name);
    free(f->help);
    free(f);
}

void metrics_registry_free(struct metrics_registry *r)
{
    if (r == NULL) return;
    for (size_t i = 0; i < r->n; i++)
        family_free(r->families[i]);
    free(r->families);
    free(r);
}

static bool family_rules_ok(const struct metrics_registry *r, enum metric_type type, const char *name,
                            const char *const *label_names, const double *buckets, size_t n_buckets)
{
    if (!metrics_name_valid(name)) return false;
    if (type == METRIC_COUNTER && !ends_with(name, "_total")) return false;
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->families[i]->name, name) == 0) return false;
    size_t n_labels = 0;
    for (; label_names != NULL && label_names[n_labels] != NULL; n_labels++) {
        const char *l = label_names[n_labels];
        if (n_labels >= METRICS_MAX_LABELS || !metrics_label_name_valid(l)) return false;
        if (type == METRIC_HISTOGRAM && strcmp(l, "le") == 0) return false;
        for (size_t j = 0; j < n_labels; j++)
            if (strcmp(label_names[j], l) == 0) return false;
    }
    if (type != METRIC_HISTOGRAM) return n_buckets == 0;
    if (n_buckets == 0 || n_buckets > METRICS_MAX_BUCKETS || buckets == NULL) return false;
    for (size_t i = 0; i < n_buckets; i++) {
        if (!isfinite(buckets[i])) return false;
        if (i > 0 && !(buckets[i] > buckets[i - 1])) return false;
    }
    return true;
}

struct metric_family *metrics_family_new(struct metrics_registry *r, enum metric_type type, const char *name,
                                         const char *help, const char *const *label_names, const double *buckets,
                                         size_t n_buckets)
{
    if (r == NULL || !family_rules_ok(r, type, name, label_names, buckets, n_buckets)) return NULL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct metric_family **nf = realloc(r->families, cap * sizeof(struct metric_family *));
        if (nf == NULL) return NULL;
        r->families = nf;
        r->cap = cap;
    }
    struct metric_family *f = calloc(1, sizeof(*f));
    if (f == NULL) return NULL;
    f->type = type;
    f->name = strdup(name);
    f->help = strdup(help != NULL ? help : "");
    bool oom = f->name == NULL || f->help == NULL;
    for (; !oom && label_names != NULL && label_names[f->n_labels] != NULL; f->n_labels++)
        oom = (f->label_names[f->n_labels] = strdup(label_names[f->n_labels])) == NULL;
    if (oom) {
        family_free(f);
        return NULL;
    }
    if (n_buckets > 0) memcpy(f->bounds, buckets, n_buckets * sizeof(*buckets));
    f->n_buckets = n_buckets;
    r->families[r->n++] = f;
    return f;
}

static bool labels_match(const struct metric_family *f, const struct metric_series *s, const char *const *values)
{
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = values != NULL && values[i] != NULL ? values[i] : "";
        if (strcmp(s->labels[i], v) != 0) return false;
    }
    return true;
}

struct metric_series *metrics_series(struct metric_family *f, const char *const *label_values)
{
    if (f == NULL) return NULL;
    for (size_t i = 0; i < f->n_series; i++)
        if (labels_match(f, f->series[i], label_values)) return f->series[i];
    if (f->n_series >= METRICS_MAX_SERIES) return NULL;
    if (f->n_series == f->cap_series) {
        size_t cap = f->cap_series ? f->cap_series * 2 : 8;
        struct metric_series **ns = realloc(f->series, cap * sizeof(struct metric_series *));
        if (ns == NULL) return NULL;
        f->series = ns;
        f->cap_series = cap;
    }
    struct metric_series *s = calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->family = f;
    for (size_t i = 0; i < f->n_labels; i++) {
        const char *v = label_values != NULL && label_values[i] != NULL ? label_values[i] : "";
        if ((s->labels[i] = strdup(v)) == NULL) {
            series_free(s);
            return NULL;
        }
    }
    f->series[f->n_series++] = s;
    return s;
}

/* ---- updates ---- */

void metrics_counter_add(struct metric_series *s, double v)
{
    if (s != NULL && s->family->type != METRIC_HISTOGRAM && v >= 0) s->value += v;
}

void metrics_counter_set(struct metric_series *s, double v)
{
    if (s != NULL && s->family->type != METRIC_HISTOGRAM) s->value = v;
}

void metrics_gauge_set(struct metric_series *s, double v)
{
    if (s != NULL && s->family->type != METRIC_HISTOGRAM) s->value = v;
}

void metrics_histogram_observe(struct metric_series *s, double v)
{
    if (s == NULL || isnan(v)) return;
    const struct metric_family *f = s->family;
    if (f->type != METRIC_HISTOGRAM) return;
    s->value += v;
    s->count++;
    for (size_t i = 0; i < f->n_buckets; i++) {
        if (v <= f->bounds[i]) {
            s->bucket[i]++;
            return;
        }
    }
    /* above every bound: only the implicit +Inf bucket (= count) */
}

double metrics_value(const struct metric_series *s)
{
    if (s == NULL) return 0;
    return s->family->type == METRIC_HISTOGRAM ? (double)s->count : s->value;
}

/* ---- rendering ---- */

struct out {
    char *data;
    size_t len, cap;
    bool oom;
};

static void put(struct out *o, const char *s, size_t n)
{
    if (o->oom) return;
    if (o->len + n + 1 > o->cap) {
        size_t cap = o->cap ? o->cap : 1024;
        while (cap < o->len + n + 1)
            cap *= 2;
        char *d = realloc(o->data, cap);
        if (d == NULL) {
            o->oom = true;
            return;
        }
        o->data = d;
        o->cap = cap;
    }
    memcpy(o->data + o->len, s, n);
    o->len += n;
    o->data[o->len] = '\0';
}

static void puts_(struct out *o, const char *s)
{
    put(o, s, strlen(s));
}

/* HELP text: backslash and newline escaped. Label values: also double quotes. */
static void put_escaped(struct out *o, const char *s, bool quote)
{
    for (const char *p = s; *p != '\0'; p++) {
        if (*p == '\\')
            puts_(o, "\\\\");
        else if (*p == '\n')
            puts_(o, "\\n");
        else if (quote && *p == '"')
            puts_(o, "\\\"");
        else
            put(o, p, 1);
    }
}

void metrics_format_value(double v, char *buf, size_t cap)
{
    if (isnan(v)) {
        snprintf(buf, cap, "NaN");
    } else if (isinf(v)) {
        snprintf(buf, cap, v > 0 ? "+Inf" : "-Inf");
    } else if (v == floor(v) && fabs(v) < 1e15) {
        snprintf(buf, cap, "%.0f", v == 0 ? 0.0 : v);
    } else {
        for (int prec = 1; prec <= 17; prec++) {
            snprintf(buf, cap, "%.*g", prec, v);
            if (strtod(buf, NULL) == v) return;
        }
    }
}

static void put_labels(struct out *o, const struct metric_family *f, const struct metric_series *s, const char *le)
{
    if (f->n_labels == 0 && le == NULL) return;
    puts_(o, "{");
    for (size_t i = 0; i < f->n_labels; i++) {
        if (i > 0) puts_(o, ",");
        puts_(o, f->label_names[i]);
        puts_(o, "=\"");
        put_escaped(o, s->labels[i], true);
        puts_(o, "\"");
    }
    if (le != NULL) {
        if (f->n_labels > 0) puts_(o, ",");
        puts_(o, "le=\"");
        puts_(o, le);
        puts_(o, "\"");
    }
    puts_(o, "}");
}

static void put_sample(struct out *o, const struct metric_family *f, const char *suffix, const struct metric_series *s,
                       const char *le, double v)
{
    char num[64];
    puts_(o, f->name);
    puts_(o, suffix);
    put_labels(o, f, s, le);
    metrics_format_value(v, num, sizeof(num));
    puts_(o, " ");
    puts_(o, num);
    puts_(o, "\n");
}

static void render_histogram(struct out *o, const struct metric_family *f, const struct metric_series *s)
{
    char le[64];
    uint64_t cumulative = 0;
    for (size_t i = 0; i < f->n_buckets; i++) {
        cumulative += s->bucket[i];
        metrics_format_value(f->bounds[i], le, sizeof(le));
        put_sample(o, f, "_bucket", s, le, (double)cumulative);
    }
    put_sample(o, f, "_bucket", s, "+Inf", (double)s->count);
    put_sample(o, f, "_sum", s, NULL, s->value);
    put_sample(o, f, "_count", s, NULL, (double)s->count);
}

static const char *type_name(enum metric_type t)
{
    switch (t) {
    case METRIC_COUNTER:
        return "counter";
    case METRIC_GAUGE:
        return "gauge";
    case METRIC_HISTOGRAM:
        return "histogram";
    }
    return "untyped";
}

char *metrics_render(const struct metrics_registry *r, size_t *len)
{
    struct out o = {0};
    put(&o, "", 0); /* an empty registry still renders "" */
    for (size_t i = 0; r != NULL && i < r->n; i++) {
        const struct metric_family *f = r->families[i];
        puts_(&o, "# HELP ");
        puts_(&o, f->name);
        puts_(&o, " ");
        put_escaped(&o, f->help, false);
        puts_(&o, "\n# TYPE ");
        puts_(&o, f->name);
        puts_(&o, " ");
        puts_(&o, type_name(f->type));
        puts_(&o, "\n");
        for (size_t j = 0; j < f->n_series; j++) {
            if (f->type == METRIC_HISTOGRAM)
                render_histogram(&o, f, f->series[j]);
            else
                put_sample(&o, f, "", f->series[j], NULL, f->series[j]->value);
        }
    }
    if (o.oom) {
        free(o.data);
        return NULL;
    }
    if (len != NULL) *len = o.len;
    return o.data;
}
