/*
 * deals_pipeline/routes/bookings_routes — see the header.  Cloud Tasks (or
 * the local dispatcher) is the only caller: the route requires task auth.
 */
#include "features/deals_pipeline/routes/bookings_routes.h"

#include "features/deals_pipeline/controllers/bookings_controller.h"

const struct http_route bookings_routes[] = {
    {"POST", "/api/deals-pipeline/bookings/:id/execute-followup", bookings_controller_execute_followup,
     HTTP_AUTH_TASK},
};
const size_t bookings_routes_count = sizeof(bookings_routes) / sizeof(bookings_routes[0]);
