/*
 * core/components — see components.h.  Each component is optional in the
 * struct so a partially started daemon can still shut down cleanly.
 */
#include "core/components.h"

#include <stdlib.h>

#include "core/app.h"

struct app_components {
    int placeholder;
};

int components_start(struct app *app)
{
    app->comp = calloc(1, sizeof(*app->comp));
    if (app->comp == NULL) {
        LOG_ERROR(&app->log, NULL, "out of memory");
        return -1;
    }
    return 0;
}

void components_stop(struct app *app)
{
    (void)app;
}

void components_reload(struct app *app)
{
    (void)app;
}

void components_free(struct app *app)
{
    free(app->comp);
    app->comp = NULL;
}
