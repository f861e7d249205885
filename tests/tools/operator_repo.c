/*
 * operator_repo — runs one statement of repositories/operator_repository directly, for
 * tests/integration/test_operator_cli.py to check the statements' own guards (tenant, task state) without the
 * command line's checks in front of them.
 *
 *   operator_repo retry SCHEMA TENANT BOOKING TYPES LOOKBACK_S   → "redriven" / "unchanged" / "error: ..."
 *   operator_repo inspect SCHEMA TENANT BOOKING                  → "found <task_status>" / "not_found" / "error"
 * The connection comes from the PG* environment; TYPES is comma-separated.  Exit status 0 unless an error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/deals_pipeline/repositories/operator_repository.h"

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: operator_repo retry|inspect SCHEMA TENANT BOOKING [TYPES LOOKBACK_S]\n");
        return 2;
    }
    char *schema_items[] = {argv[2]};
    struct strlist schemas = {.items = schema_items, .n = 1};
    char err[512];
    struct operator_repository *r = operator_repository_connect("", &schemas, err, sizeof(err));
    if (r == NULL) {
        printf("error: %s\n", err);
        return 1;
    }
    int rc;
    if (strcmp(argv[1], "retry") == 0 && argc == 7) {
        char *types[16];
        struct strlist list = {.items = types, .n = 0};
        for (char *t = strtok(argv[5], ","); t != NULL && list.n < 16; t = strtok(NULL, ",")) types[list.n++] = t;
        rc = operator_repository_retry(r, argv[2], argv[3], argv[4], &list, atoi(argv[6]), err, sizeof(err));
        printf("%s\n", rc > 0 ? "redriven" : rc == 0 ? "unchanged" : err);
    } else {
        struct booking_detail d;
        rc = operator_repository_inspect(r, argv[2], argv[3], argv[4], &d, err, sizeof(err));
        if (rc > 0) printf("found %s\n", d.b.task_status);
        else printf("%s\n", rc == 0 ? "not_found" : err);
    }
    operator_repository_close(r);
    return rc < 0 ? 1 : 0;
}
