/* SPDX-License-Identifier: MIT */
/*
 * A connection's requests about itself and others (docs/protocol.md): Hello,
 * which checks the version, names the client, reclaims a connection from
 * before a restart or draws a new one's secret, and says what this allocd
 * understands; and Disconnect, which closes other connections as if their
 * processes had exited.
 */
#include <inttypes.h>
#include <stdio.h>
#include <sys/random.h>

#include "log.h"
#include "proto.h"
#include "text.h"
#include "version.h"

void proto_hello(struct core *core, struct session *s, struct proto_out *out, uint64_t id, const Allocd__Hello *m) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__HelloReply hello = ALLOCD__HELLO_REPLY__INIT;
        const struct limits *l = core_limits(core);
        struct core_result res;
        char msg[256];

        if (s->hello) {
                out->close = true; /* PROTOCOL always ends the connection (docs/protocol.md) */
                return proto_error(out, id, E_PROTOCOL, "Hello was already sent; closing");
        }
        if (!m->has_version || m->version != WIRE_VERSION) {
                snprintf(msg, sizeof(msg),
                         "this allocd speaks protocol version %d, the client %u; use a matching liballoc-client",
                         WIRE_VERSION, m->has_version ? m->version : 0);
                out->close = true;
                return proto_error(out, id, E_VERSION, msg);
        }
        if (m->client_name && !text_valid(m->client_name, CLIENT_NAME_MAX_LEN)) {
                snprintf(msg, sizeof(msg), "client_name is 1-%d bytes of UTF-8 without control characters",
                         CLIENT_NAME_MAX_LEN);
                return proto_error(out, id, E_INVALID, msg);
        }
        if (m->has_reclaim_serial) {
                if (core_client_reclaim(core, &s->client, m->reclaim_serial, m->reclaim_secret.data,
                                        m->has_reclaim_secret ? m->reclaim_secret.len : 0, &res) != E_OK) {
                        /*
                         * Still in its handshake: it may say a plain Hello next, as a new connection.  A
                         * connection not kept (one that held nothing, every client after a restart
                         * without the state) is everyday, and a placeholder's release was said when it
                         * went: debug only.  Another uid's or a wrong secret is not everyday.
                         */
                        logx(res.code == E_NOT_FOUND ? LOG_LEVEL_DEBUG : LOG_LEVEL_NOTICE, CLIENT_CTX(&s->client),
                             CLIENT_FMT " cannot reclaim connection %" PRIu64 ": %s", CLIENT_ARGS(&s->client),
                             m->reclaim_serial, res.msg);
                        return proto_error(out, id, res.code, res.msg);
                }
                out->reclaimed = s->client.serial;
                hello.has_reclaimed = true;
                hello.reclaimed = s->client.nrefs;
                logx(LOG_LEVEL_INFO, CLIENT_CTX(&s->client),
                     CLIENT_FMT " reclaimed connection %" PRIu64 " and its %u %s", CLIENT_ARGS(&s->client),
                     s->client.serial, s->client.nrefs, plural(s->client.nrefs, "reference", "references"));
        } else if (core_client_admit(core, &s->client, &res) != E_OK) {
                logx(LOG_LEVEL_NOTICE, CLIENT_CTX(&s->client), "refusing " CLIENT_FMT ": %s", CLIENT_ARGS(&s->client),
                     res.msg);
                out->close = true;
                return proto_error(out, id, res.code, res.msg);
        } else if (getrandom(s->client.secret, sizeof(s->client.secret), 0) != sizeof(s->client.secret)) {
                return proto_error(out, id, E_INTERNAL, "allocd could not draw the connection's secret; try again");
        } else {
                core_client_update(core, &s->client); /* the kept state has the secret before the reply */
        }
        /* Only now: a refused Hello changes nothing, and the client may say another. */
        if (m->client_name)
                core_client_set_name(core, &s->client, m->client_name);
        s->hello = true;
        hello.has_serial = hello.has_secret = true;
        hello.serial = s->client.serial;
        hello.secret.data = s->client.secret;
        hello.secret.len = sizeof(s->client.secret);
        hello.has_version = hello.has_max_packet = hello.has_max_regions = hello.has_max_waiters = true;
        hello.has_wait_timeout_ms = hello.has_max_batch = hello.has_quiet = hello.has_renew = true;
        hello.has_spares_max = hello.has_cancel = hello.has_goodbye = true;
        hello.spares_max = SPARES_MAX;
        hello.max_batch = CORE_BATCH_MAX;
        hello.quiet = hello.renew = hello.cancel = hello.goodbye = true;
        hello.version = WIRE_VERSION;
        hello.daemon_version = (char *)ALLOCD_VERSION;
        hello.max_packet = WIRE_MAX_PACKET;
        hello.max_regions = l->max_regions_per_connection;
        hello.max_waiters = l->max_waiters_per_connection;
        hello.wait_timeout_ms = l->wait_timeout_ms;
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_HELLO;
        reply.hello = &hello;
        proto_pack(out, &reply);
        logx(LOG_LEVEL_DEBUG, CLIENT_CTX(&s->client), CLIENT_FMT " connected as '%s'", CLIENT_ARGS(&s->client),
             s->client.name);
}

void proto_disconnect(struct core *core, struct session *s, struct proto_out *out, uint64_t id,
                      const Allocd__Disconnect *m) {
        Allocd__Reply reply = ALLOCD__REPLY__INIT;
        Allocd__DisconnectReply body = ALLOCD__DISCONNECT_REPLY__INIT;
        struct core_result res;
        char whose[40];

        if (core_client_evict(core, &s->client, m->has_serial ? m->serial : 0, m->has_pid ? m->pid : 0,
                              &body.connections, &body.references, &res) != E_OK)
                return proto_error(out, id, res.code, res.msg);
        body.has_connections = body.has_references = true;
        reply.has_id = reply.has_error = true;
        reply.id = id;
        reply.body_case = ALLOCD__REPLY__BODY_DISCONNECT;
        reply.disconnect = &body;
        proto_pack(out, &reply);
        if (m->has_serial && m->serial)
                snprintf(whose, sizeof(whose), "connection %" PRIu64, m->serial);
        else
                snprintf(whose, sizeof(whose), "pid %d's", (int)m->pid);
        logx(LOG_LEVEL_NOTICE, CLIENT_CTX(&s->client), CLIENT_FMT " disconnects %s: %u %s holding %llu %s",
             CLIENT_ARGS(&s->client), whose, body.connections, plural(body.connections, "connection", "connections"),
             (unsigned long long)body.references, plural(body.references, "reference", "references"));
}
