/*
 * core/metrics — a tiny Prometheus registry and its text exposition format
 * (version 0.0.4).  No business logic and no I/O: the owner registers metric
 * families (counter, gauge, histogram; fixed label names), gets or creates a
 * series per label-value tuple, updates it, and asks for the rendered text.
 *
 * Rules enforced at registration (a violation returns NULL): metric and label
 * names match [a-zA-Z_:][a-zA-Z0-9_:]* / [a-zA-Z_][a-zA-Z0-9_]* (labels not
 * starting with "__", histograms have no "le" label), a counter's name ends
 * in "_total", names are unique, histogram bucket bounds strictly increase
 * (the +Inf bucket is implicit).  A family holds at most METRICS_MAX_SERIES
 * series, so a label fed from outside cannot grow memory without bound.
 *
 * Rendering: families in registration order, each with "# HELP" (backslash
 * and newline escaped) and "# TYPE", then its series in creation order;
 * label values escape backslash, double quote and newline; histograms render
 * cumulative _bucket{le=...} lines ending with le="+Inf" (= _count), then
 * _sum and _count.  Numbers: integral values without a fraction ("42"),
 * others in the shortest form that reads back exactly, "+Inf"/"-Inf"/"NaN".
 * Single-threaded (the loop thread).
 */
#ifndef FOLLOWUPD_CORE_METRICS_H
#define FOLLOWUPD_CORE_METRICS_H

#include <stdbool.h>
#include <stddef.h>

#define METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"
#define METRICS_MAX_LABELS 4
#define METRICS_MAX_BUCKETS 32
#define METRICS_MAX_SERIES 512

enum metric_type { METRIC_COUNTER, METRIC_GAUGE, METRIC_HISTOGRAM };

struct metrics_registry;
struct metric_family;
struct metric_series;

struct metrics_registry *metrics_registry_new(void);
void metrics_registry_free(struct metrics_registry *r);

/* label_names: NULL-terminated list (NULL = no labels); buckets only for
 * histograms (upper bounds, strictly increasing, finite). NULL on a rule
 * violation or out of memory. The family belongs to the registry. */
struct metric_family *metrics_family_new(struct metrics_registry *r, enum metric_type type, const char *name,
                                         const char *help, const char *const *label_names, const double *buckets,
                                         size_t n_buckets);

/* The series for these label values (one per label name, copied; NULL entries
 * read as ""), created on first use. NULL when the family is full or OOM. */
struct metric_series *metrics_series(struct metric_family *f, const char *const *label_values);

/* Updates; a NULL series is ignored (so a failed lookup never crashes). */
void metrics_counter_add(struct metric_series *s, double v); /* v >= 0, else ignored */
void metrics_counter_set(struct metric_series *s, double v); /* mirror a count kept elsewhere */
void metrics_gauge_set(struct metric_series *s, double v);
void metrics_histogram_observe(struct metric_series *s, double v);
double metrics_value(const struct metric_series *s); /* counter/gauge value, histogram count */

/* The exposition text, malloc'd and NUL-terminated (*len without the NUL); NULL on OOM. */
char *metrics_render(const struct metrics_registry *r, size_t *len);

/* Pure helpers (exposed for tests). */
bool metrics_name_valid(const char *name);
bool metrics_label_name_valid(const char *name);
/* Prometheus number text of v into buf (cap >= 32). */
void metrics_format_value(double v, char *buf, size_t cap);

#endif
