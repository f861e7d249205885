/*
 * core/adapters — the production implementations of the service ports
 * (services/ports.h) over the shared clients: the Cloud Tasks task queue
 * (adds the OIDC token and dispatch deadline from the live configuration to
 * each task), the local task queue (the task lives in the row itself), the
 * voice-agent port, and the ownership port over shared/db/db_ownership.  They translate between the ports' plain structs and the
 * clients' own types; no business logic.
 */
#ifndef FOLLOWUPD_CORE_ADAPTERS_H
#define FOLLOWUPD_CORE_ADAPTERS_H

#include "core/config.h"
#include "features/deals_pipeline/services/ports.h"

struct cloud_tasks_client;
struct voice_agent_client;
struct uv_timers;
struct db_ownership;

struct tq_call;

struct cloud_tasks_queue_adapter {
    struct cloud_tasks_client *client;
    const struct config *cfg;
    struct tq_call *calls;        /* contexts of the creates/deletes in flight */
};

struct voice_agent_adapter {
    struct voice_agent_client *client;
};

/* Local backend: "creating a task" only names it (local/<task id>); the row
 * carries the schedule and the local dispatcher runs it. Completes via timers. */
struct local_queue_adapter {
    struct uv_timers *timers;
};

void cloud_tasks_queue_port(struct cloud_tasks_queue_adapter *a, struct task_queue *out);
/* Call after cloud_tasks_client_free(), which drops its outstanding operations without calling them back:
 * frees their contexts (their callers are never answered; they are shutting down too). */
void cloud_tasks_queue_adapter_drop_calls(struct cloud_tasks_queue_adapter *a);
void local_queue_port(struct local_queue_adapter *a, struct task_queue *out);
void voice_agent_port_init(struct voice_agent_adapter *a, struct voice_agent_port *out);
void ownership_port_init(struct db_ownership *o, struct ownership_port *out);
/* The full name the configured queue gives the task with `task_id` (projects/P/locations/L/queues/Q/tasks/ID,
 * or local/ID for the local backend), as the ports' task_name does. 0, or -1 when it does not fit / is invalid. */
int configured_task_name(const struct config *cfg, const char *task_id, char *out, size_t cap);

#endif
