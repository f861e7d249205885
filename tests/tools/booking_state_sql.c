/*
 * booking_state_sql — prints the booking-state statement (repositories/booking_state_sql) for one schema, with
 * the schema quoted as an identifier, for tests/integration/test_booking_state_cost.py to EXPLAIN it.
 *
 *   booking_state_sql SCHEMA      → the statement on stdout ($1..$4 as in booking_state_sql.h)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "features/deals_pipeline/repositories/booking_state_sql.h"
#include "shared/db/db_util.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: booking_state_sql SCHEMA\n");
        return 2;
    }
    size_t n = strlen(argv[1]);
    char *quoted = malloc(2 * n + 3), *q = quoted;
    if (quoted == NULL) return 1;
    *q++ = '"';
    for (const char *p = argv[1]; *p; p++) {
        if (*p == '"') *q++ = '"';
        *q++ = *p;
    }
    *q++ = '"';
    *q = '\0';
    char *sql = db_sql_render(booking_state_sql, quoted);
    if (sql == NULL) return 1;
    puts(sql);
    free(sql);
    free(quoted);
    return 0;
}
