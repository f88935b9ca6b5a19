/* SPDX-License-Identifier: MIT */
/*
 * allocctl: what a running allocd holds and for whom.
 *
 *   allocctl [--socket PATH] [--json] COMMAND [ARGS]
 *
 * One function per command; each parses its own options (so --help and
 * --json work after the command too), asks allocd through liballoc-client
 * and prints a table, or with --json one JSON document built with json-c.
 * The JSON schema is in docs/cli.md and only ever grows.
 */
#include "allocctl.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "duration.h"
#include "wire.h"
#include "version.h"

static const char *socket_path;
/* socket_path, or the default it stands for; "" if there is none. */
static char resolved_path[sizeof(((struct sockaddr_un *)0)->sun_path)];

const char *kind_name(enum alloc_kind k) {
        static const char *names[] = {"host", "fpga", "pinned", "gpu"};

        return (unsigned)k < sizeof(names) / sizeof(names[0]) ? names[k] : "unknown";
}

const char *fmt_size(uint64_t bytes, char *buf, size_t size) {
        static const char *units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
        unsigned u = 0;

        while (u + 1 < sizeof(units) / sizeof(units[0]) && bytes >> (10 * (u + 1)))
                u++;
        if (u == 0 || bytes % (1ull << (10 * u)) == 0) {
                snprintf(buf, size, "%" PRIu64 "%s", bytes >> (10 * u), units[u]);
                return buf;
        }
        /* Just under the next unit %.1f rounds up to 1024.0: that is 1.0 of the next one. */
        if ((double)bytes / (double)(1ull << (10 * u)) >= 1023.95 && u + 1 < sizeof(units) / sizeof(units[0]))
                u++;
        snprintf(buf, size, "%.1f%s", (double)bytes / (double)(1ull << (10 * u)), units[u]);
        return buf;
}

const char *fmt_age(uint64_t seconds, char *buf, size_t size) {
        if (seconds < 60)
                snprintf(buf, size, "%" PRIu64 "s", seconds);
        else if (seconds < 3600)
                snprintf(buf, size, "%" PRIu64 "m%02" PRIu64 "s", seconds / 60, seconds % 60);
        else if (seconds < 86400)
                snprintf(buf, size, "%" PRIu64 "h%02" PRIu64 "m", seconds / 3600, seconds / 60 % 60);
        else
                snprintf(buf, size, "%" PRIu64 "d%02" PRIu64 "h", seconds / 86400, seconds / 3600 % 24);
        return buf;
}

void json_print(json_object *o) {
        puts(json_object_to_json_string_ext(o, JSON_C_TO_STRING_PRETTY | JSON_C_TO_STRING_NOSLASHESCAPE));
        json_object_put(o);
}

json_object *json_text(const char *s) {
        char *t = text_utf8(s);
        json_object *o = json_object_new_string(t ? t : "?");

        free(t);
        return o;
}

json_object *json_u64(uint64_t v) {
        return json_object_new_uint64(v);
}

/*
 * A number as allocctl prints ids, pids and serials: decimal digits and nothing else.  strtoull
 * alone takes a sign ("-1" is 2^64 - 1), blanks, and with base 0 "010" as 8: another region's id.
 */
static bool parse_decimal(const char *s, uint64_t *v) {
        char *end;

        if (*s < '0' || *s > '9')
                return false;
        errno = 0;
        *v = strtoull(s, &end, 10);
        return !errno && !*end;
}

static int free_words(struct ctl *ctl, int argc, char **argv) {
        (void)argc;
        if (!parse_decimal(argv[0], &ctl->id)) {
                fprintf(stderr, "allocctl: free %s: a region id, as `allocctl dump` shows it\n", argv[0]);
                return EXIT_USAGE;
        }
        return EXIT_OK;
}

/*
 * Frees a PERSIST region by id, whoever made it: allocd lets its uid, the pool's owner or root do
 * that from any connection, which is how an operator takes back a region whose creator is gone.
 */
static int cmd_free(struct ctl *ctl, int argc, char **argv) {
        int r;

        (void)argc;
        (void)argv;
        if ((r = alloc_region_free(ctl->client, ctl->id)) < 0)
                return request_failed("free", r);
        if (ctl->json)
                json_print(json_object_new_object());
        return EXIT_OK;
}

/* ---- wait ---- */

/* NAME [DURATION]: the DURATION, 30s without one. */
static int wait_words(struct ctl *ctl, int argc, char **argv) {
        int e;

        ctl->ms = 30000;
        if (argc > 1 && (e = parse_duration_ms(argv[1], &ctl->ms)) < 0) {
                fprintf(stderr, "allocctl: wait %s %s: %s\n", argv[0], argv[1],
                        e == -ERANGE ? "too long: at most 71582m (2^32 - 1 ms)" : "a duration, as 500ms, 30s or 2m");
                return EXIT_USAGE;
        }
        return EXIT_OK;
}

/* Attaches NAME, waiting for it up to DURATION (30s), then says what it is; the reference goes as allocctl exits. */
static int cmd_wait(struct ctl *ctl, int argc, char **argv) {
        uint32_t ms = ctl->ms;
        struct alloc_region r;
        char size[16];
        int e;

        (void)argc;
        e = alloc_region_attach(ctl->client, argv[0], &(struct alloc_attach_opts){.timeout_ms = ms}, &r);
        /* allocd's advice ("attach with a timeout") is for programs; here the way to wait is a DURATION. */
        if (ms == 0 && (e == -ENOENT || e == -EAGAIN)) {
                fprintf(stderr, "allocctl: wait: '%s' is %s; 0 looks once: give a DURATION (e.g. 30s) to wait for it\n",
                        argv[0], e == -ENOENT ? "not published" : "not sealed yet");
                return EXIT_FAILED;
        }
        if (e < 0)
                return request_failed("wait", e);
        if (ctl->json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "id", json_u64(r.id));
                json_object_object_add(o, "kind", json_text(kind_name(r.kind)));
                json_object_object_add(o, "addr", json_u64(r.addr));
                json_object_object_add(o, "size", json_u64(r.size));
                json_object_object_add(o, "pool", json_text(r.pool));
                json_object_object_add(o, "owner", json_u64(r.owner));
                json_print(o);
        } else {
                char pool[ESCAPED_SIZE(r.pool)], name[4 * ALLOC_NAME_MAX + 1];
                printf("%s: region %" PRIu64 ", %s, %s at 0x%" PRIx64 " in pool %s, allocated by uid %u\n",
                       text_escape(argv[0], false, name, sizeof(name)), r.id, kind_name(r.kind),
                       fmt_size(r.size, size, sizeof(size)), r.addr, text_escape(r.pool, false, pool, sizeof(pool)),
                       (unsigned)r.owner);
        }
        return EXIT_OK;
}

/* ---- disconnect ---- */

/* PID, or serial:N as `allocctl clients` lists it. */
static int disconnect_words(struct ctl *ctl, int argc, char **argv) {
        const char *arg = argv[0], *num = arg;

        (void)argc;
        if (!strncmp(arg, "serial:", 7))
                num = arg + 7;
        ctl->serial = num != arg;
        if (!parse_decimal(num, &ctl->id) || ctl->id == 0 || (!ctl->serial && ctl->id > INT32_MAX)) {
                fprintf(stderr,
                        "allocctl: disconnect %s: a process id, or serial:N for one connection (the SERIAL column "
                        "of `allocctl clients`)\n",
                        arg);
                return EXIT_USAGE;
        }
        return EXIT_OK;
}

/* Closes the connections of that process, or that one connection. */
static int cmd_disconnect(struct ctl *ctl, int argc, char **argv) {
        uint32_t n = 0;
        int r;

        (void)argc;
        (void)argv;
        if ((r = ctl->serial ? alloc_drop_client(ctl->client, 0, ctl->id, &n)
                             : alloc_drop_client(ctl->client, (pid_t)ctl->id, 0, &n)) < 0)
                return request_failed("disconnect", r);
        if (ctl->json) {
                json_object *o = json_object_new_object();
                json_object_object_add(o, "connections", json_u64(n));
                json_print(o);
        } else {
                printf("disconnected %u connection%s\n", n, n == 1 ? "" : "s");
        }
        return EXIT_OK;
}

/* ---- the command line ---- */

static const struct command {
        const char *name;
        int (*run)(struct ctl *ctl, int argc, char **argv);
        int (*parse)(int argc, char **argv);                  /* NULL: min_args to max_args words, no options */
        int (*words)(struct ctl *ctl, int argc, char **argv); /* reads them into ctl, before allocd is asked */
        int min_args, max_args;
        const char *args, *summary, *help;
} commands[] = {
        {"status", cmd_status, NULL, NULL, 0, 0, "", "pools, daemon version and uptime, connected clients",
         "One row per pool: kind, size, used, free, largest free range, fragmentation\n"
         "(1 - largest free / free), regions and waiting requests; then each pool's\n"
         "owner, group, mode and quota, and its biggest users (yours, if you may neither\n"
         "attach nor allocate there); then the clients.\n"},
        {"dump", cmd_dump, NULL, NULL, 0, 1, "[POOL]", "every region, or every region of POOL",
         "One row per region you may see: id, pool, offset (memory pools) or address\n"
         "(fpga), size, format (raw, or falloc:SIZExCOUNT for a heap), flags, references, age,\n"
         "holders (pid/uid/command) and name.\n"},
        {"clients", cmd_clients, NULL, NULL, 0, 0, "", "every connection and what it holds",
         "One row per connection: its serial, pid, uid, command name, regions and bytes\n"
         "held, waiting requests, and the name the client gave.\n"},
        {"free", cmd_free, NULL, free_words, 1, 1, "ID", "free a PERSIST region (its uid, the pool's owner or root)",
         "Takes the region's name and its PERSIST reference away, as its creator's Free\n"
         "would: it goes back to its pool once no connection holds it.  Only PERSIST\n"
         "regions outlive their holders, so only those can be freed this way.\n"},
        {"wait", cmd_wait, NULL, wait_words, 1, 2, "NAME [DURATION]", "wait until NAME is published and sealed",
         "Waits up to DURATION (30s; 500ms, 2m ..., at most 71582m; 0 looks once) for a\n"
         "region to be published as NAME and sealed, as a consumer's attach would, then\n"
         "prints its id, kind, size, offset, pool and the uid that allocated it (exit 0);\n"
         "exit 1 if it is not there in time.  For scripts that start a consumer only\n"
         "once its producer is ready.\n"},
        {"disconnect", cmd_disconnect, NULL, disconnect_words, 1, 1, "PID|serial:N",
         "close a client's connections (its uid or root)",
         "Closes every connection of process PID, or the one connection serial:N (the\n"
         "SERIAL column of `allocctl clients`), as if the process had exited: every\n"
         "region they hold is released, and their next call fails.  Root may close any\n"
         "connection; other users only their own.\n"},
        {"map", cmd_map, map_args, NULL, 1, 1, "POOL [--svg FILE] [--width N] [--rows N]",
         "a picture of how POOL is used",
         "One cell per slice of the pool, as wide as the terminal: used, partly used,\n"
         "free, the largest free range, and reserved (address space between an fpga\n"
         "pool's ranges).  --svg FILE writes the same picture as SVG, one shape per\n"
         "segment, for a bug report; --width and --rows size the terminal picture.\n"},
        {"metrics", cmd_metrics, NULL, metrics_words, 0, 0, "", "the same figures for Prometheus",
         "What status shows, in the Prometheus text format (0.0.4): allocd_up, then per\n"
         "pool its size, used, free and largest free bytes, regions, waiters, whether it\n"
         "is available and draining, its quota and each listed uid's use.  When allocd\n"
         "cannot be reached it prints allocd_up 0 alone and still exits 0, so that\n"
         "`allocctl metrics > F.$$ && mv F.$$ F` (node_exporter's textfile collector)\n"
         "replaces the old figures.  Names: docs/cli.md.\n"},
};

static void usage(FILE *f) {
        fprintf(f, "usage: allocctl [--socket PATH] [--json] COMMAND [ARGS]\n\ncommands:\n");
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                fprintf(f, "  %-10s %-40s %s\n", commands[i].name, commands[i].args, commands[i].summary);
        fprintf(f, "\noptions:\n"
                   "  -s, --socket PATH  allocd's socket (default: $ALLOCD_SOCKET, else /run/allocd/allocd.sock\n"
                   "                     for root or if it exists, else $XDG_RUNTIME_DIR/allocd/allocd.sock)\n"
                   "  -j, --json         print JSON (schema: docs/cli.md) instead of a table\n"
                   "  -h, --help         this text; 'allocctl COMMAND --help' for one command\n"
                   "  -V, --version      allocctl's version\n"
                   "\nenvironment: ALLOCD_SOCKET; ALLOCD_TIMEOUT (default 30s), how long to wait for allocd to\n"
                   "answer; ALLOCD_RECONNECT (default 60s), how long to try again when it goes away\n"
                   "\nexit status: 0 ok, 1 the request failed, 2 usage error, 3 allocd unreachable or not answering\n");
}

static void command_usage(const struct command *cmd, FILE *f) {
        /* metrics has one format: --json there is a usage error (metrics_words). */
        fprintf(f, "usage: allocctl [--socket PATH] %s%s%s%s\n\n%s", cmd->run == cmd_metrics ? "" : "[--json] ",
                cmd->name, *cmd->args ? " " : "", cmd->args, cmd->help);
}

/*
 * Where to look when allocd cannot be reached: the system daemon is started by systemd
 * (allocd.socket), which accepts connections for it even when it fails to start.
 */
static void unreachable_hint(void) {
        if (!strcmp(resolved_path, WIRE_SYSTEM_SOCKET) && access("/run/systemd/system", F_OK) == 0)
                fprintf(stderr, "allocctl: allocd runs under systemd here: see `systemctl status allocd` and "
                                "`journalctl -u allocd`\n");
}

/* alloc_last_error() for a terminal: it quotes what was asked (a pool's name, a path) and allocd's words. */
static const char *last_error(void) {
        static char buf[4 * 511 + 1];

        return text_escape_controls(alloc_last_error(), buf, sizeof(buf));
}

int request_failed(const char *what, int r) {
        fprintf(stderr, "allocctl: %s: %s\n", what, last_error());
        /* -ECANCELED: allocd stopped under a wait, not sent again with ALLOCD_RECONNECT=0: gone, not refusing. */
        if (r == -ESTALE)
                return EXIT_UNREACHABLE; /* it went away and came back without its state: run it again */
        if (r != -ETIME && r != -ECONNRESET && r != -ECANCELED)
                return EXIT_FAILED;
        unreachable_hint();
        return EXIT_UNREACHABLE;
}

/* Connects; on failure says what to do and returns EXIT_UNREACHABLE. */
static int connect_daemon(struct ctl *ctl) {
        int r = alloc_connect(&ctl->client, socket_path, "allocctl");

        if (socket_path)
                snprintf(resolved_path, sizeof(resolved_path), "%s", socket_path);
        else if (wire_default_socket(resolved_path, sizeof(resolved_path), true) < 0)
                *resolved_path = '\0';
        if (r == 0)
                return EXIT_OK;
        if (r ==
            -EINVAL) { /* an ALLOCD_* setting (TIMEOUT, SPIN, QUIET, SPARE...) or the socket path: how it was asked */
                fprintf(stderr, "allocctl: %s\n", last_error());
                return EXIT_USAGE;
        }
        if (r == -EMFILE) { /* allocd answered: this uid has all the connections it may have */
                fprintf(stderr, "allocctl: allocd at %s refused the connection: %s\n", resolved_path, last_error());
                return EXIT_FAILED;
        }
        if (!*resolved_path)
                fprintf(stderr, "allocctl: %s\n", last_error());
        else if (r == -ENOENT || r == -ECONNREFUSED)
                fprintf(stderr,
                        "allocctl: allocd is not running at %s: start it with `systemctl start allocd` or pass "
                        "--socket\n",
                        resolved_path);
        else if (r == -EACCES || r == -EPERM)
                fprintf(stderr, "allocctl: may not connect to allocd at %s: %s; run as a user who may\n", resolved_path,
                        strerror(-r));
        else
                fprintf(stderr, "allocctl: cannot talk to allocd at %s: %s\n", resolved_path, last_error());
        unreachable_hint();
        return EXIT_UNREACHABLE;
}

static int run(int argc, char **argv) {
        static const struct option opts[] = {
                {"socket", required_argument, NULL, 's'},
                {"json", no_argument, NULL, 'j'},
                {"help", no_argument, NULL, 'h'},
                {"version", no_argument, NULL, 'V'},
                {0},
        };
        struct ctl ctl = {0};
        const struct command *cmd = NULL;
        char **args;
        /* args[plain] on came after "--": words, never options (a region may be named "-x"). */
        int o, nargs = 0, plain = -1, r;

        argv[0] = (char *)"allocctl"; /* getopt's messages start with it: the name, not the path run */
        /* '+': stop at the command; its own options are read below, after it. */
        while ((o = getopt_long(argc, argv, "+s:jhV", opts, NULL)) != -1) {
                switch (o) {
                case 's':
                        socket_path = optarg;
                        break;
                case 'j':
                        ctl.json = true;
                        break;
                case 'h':
                        usage(stdout);
                        return EXIT_OK;
                case 'V':
                        printf("allocctl %s\n", ALLOCD_VERSION);
                        return EXIT_OK;
                default:
                        fprintf(stderr, "allocctl: try 'allocctl --help'\n");
                        return EXIT_USAGE;
                }
        }
        if (optind >= argc) {
                usage(stderr);
                return EXIT_USAGE;
        }
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
                if (!strcmp(argv[optind], commands[i].name))
                        cmd = &commands[i];
        if (!cmd) {
                fprintf(stderr,
                        "allocctl: unknown command '%s'; the commands are status, dump, clients, free, wait, "
                        "disconnect, map and metrics\n",
                        argv[optind]);
                return EXIT_USAGE;
        }
        /* The command's words: options every command takes are handled here, the rest passed on. */
        args = calloc((size_t)argc, sizeof(*args));
        if (!args) {
                fprintf(stderr, "allocctl: out of memory\n");
                return EXIT_FAILED;
        }
        for (int i = optind + 1; i < argc; i++) {
                if (plain < 0 && !strcmp(argv[i], "--")) {
                        plain = nargs;
                        if (cmd->parse) /* its own getopt stops there too */
                                args[nargs++] = argv[i];
                } else if (plain >= 0) {
                        args[nargs++] = argv[i];
                } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
                        command_usage(cmd, stdout);
                        free(args);
                        return EXIT_OK;
                } else if (!strcmp(argv[i], "--json") || !strcmp(argv[i], "-j")) {
                        ctl.json = true;
                } else if (!strcmp(argv[i], "--socket") || !strcmp(argv[i], "-s")) {
                        if (i + 1 >= argc) {
                                fprintf(stderr, "allocctl %s: --socket needs a PATH\n", cmd->name);
                                free(args);
                                return EXIT_USAGE;
                        }
                        socket_path = argv[++i];
                } else if (!strncmp(argv[i], "--socket=", 9)) {
                        socket_path = argv[i] + 9;
                } else {
                        args[nargs++] = argv[i];
                }
        }
        if (cmd->parse) {
                if ((r = cmd->parse(nargs, args)) != EXIT_OK) {
                        free(args);
                        return r;
                }
        } else {
                for (int i = 0; i < (plain < 0 ? nargs : plain); i++)
                        if (args[i][0] == '-') {
                                fprintf(stderr, "allocctl %s: unknown option '%s'; try 'allocctl %s --help'\n",
                                        cmd->name, args[i], cmd->name);
                                free(args);
                                return EXIT_USAGE;
                        }
                if (nargs < cmd->min_args || nargs > cmd->max_args) {
                        /* Which word is wrong: the usage alone leaves the user to compare. */
                        if (nargs > cmd->max_args)
                                fprintf(stderr, "allocctl %s: unexpected argument '%s'\n", cmd->name,
                                        args[cmd->max_args]);
                        else
                                fprintf(stderr, "allocctl %s: missing %.*s\n", cmd->name, (int)strcspn(cmd->args, " "),
                                        cmd->args);
                        command_usage(cmd, stderr);
                        free(args);
                        return EXIT_USAGE;
                }
        }
        /* A bad word is a usage error whether or not allocd is there: read them before connecting. */
        if (cmd->words && (r = cmd->words(&ctl, nargs, args)) != EXIT_OK) {
                free(args);
                return r;
        }
        /* metrics says allocd_up 0 where allocd is not there (connect_daemon said why on stderr); a
         * usage error (a bad ALLOCD_* setting) stays one. */
        if ((r = connect_daemon(&ctl)) == EXIT_OK || (cmd->run == cmd_metrics && r != EXIT_USAGE))
                r = cmd->run(&ctl, nargs, args);
        alloc_disconnect(ctl.client);
        free(args);
        return r;
}

/*
 * What was printed reached stdout: a full disk or a closed file must not pass for a complete
 * answer, since a script trusts the exit status (a dump cut short exits non-zero).
 */
int main(int argc, char **argv) {
        int r = run(argc, argv), e = fflush(stdout) == EOF ? errno : 0;

        if (!ferror(stdout))
                return r;
        fprintf(stderr, "allocctl: could not write the output%s%s\n", e ? ": " : "", e ? strerror(e) : "");
        return r == EXIT_OK ? EXIT_FAILED : r;
}
