/*
 * deals_pipeline/routes/bookings_routes — the feature's HTTP route table
 * (routing only: method, path pattern, controller, authentication).
 */
#ifndef FOLLOWUPD_DEALS_PIPELINE_BOOKINGS_ROUTES_H
#define FOLLOWUPD_DEALS_PIPELINE_BOOKINGS_ROUTES_H

#include <stddef.h>

#include "shared/http/http_router.h"

extern const struct http_route bookings_routes[];
extern const size_t bookings_routes_count;

#endif
