/*
 * shared/db/db_notify — naming of the LISTEN/NOTIFY channel of a tenant schema.
 *
 * A channel name is an identifier of at most 63 bytes, while schema names are
 * arbitrary, so the channel is derived: "followupd_" + lowercase hex MD5 of the
 * schema name's bytes (42 bytes). The database side computes the same name with
 * 'followupd_' || md5(schema_name) in the NOTIFY trigger.
 */
#ifndef FOLLOWUPD_SHARED_DB_DB_NOTIFY_H
#define FOLLOWUPD_SHARED_DB_DB_NOTIFY_H

#define DB_CHANNEL_PREFIX "followupd_"
#define DB_CHANNEL_LEN 42 /* strlen(prefix) + 32 hex digits */

/* Write the channel for `schema` into out (NUL-terminated). 0, or -1 when
 * schema is NULL/empty or hashing fails (out is then ""). */
int db_channel_for_schema(const char *schema, char out[64]);

#endif
