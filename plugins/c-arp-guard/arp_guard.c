// c-arp-guard: an ARP spoofing guard for wasm-vtep, in C, against the bindings wit-bindgen
// generates from plugin-sdk/wit/plugin.wit (interface 0.2.0). See README.md.
//
// The addresses in `protect` belong to VMs behind this VTEP's local ports. Nobody on the far
// side of the underlay may announce them, so an ARP request or reply (gratuitous or not) that
// arrives decapsulated and claims one of them as its sender is a spoof (or a
// misconfiguration): it is dropped (reason 1) before it reaches, and poisons, a local VM's
// neighbour table.
//
// Memory: the bindings follow the canonical ABI's rule that a callee owns its arguments, so
// every export frees what it is given; results are heap-allocated and freed by the bindings'
// post-return functions after the host has copied them.

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "plugin.h"

typedef exports_wasm_vtep_plugin_hooks_frame_meta_t frame_meta_t;
typedef exports_wasm_vtep_plugin_hooks_filter_result_t filter_result_t;
typedef wasm_vtep_plugin_types_arp_meta_t arp_meta_t;

#define ETHERTYPE_ARP 0x0806
#define ARP_REQUEST 1
#define ARP_REPLY 2

// The drop reason the host counts per plugin (`vtep plugin show`: calls.drops."1").
#define REASON_SPOOFED 1

// A pass depends only on fields that are part of the host's flow key (direction, ethertype,
// the ARP fields) and on the configuration, which a reload replaces together with the cache:
// it may be reused. Drops are never cached, so that every spoofed frame reaches `filter` and
// is counted and logged.
#define PASS_CACHE_SECS 60

// Enough for the VMs of one VTEP; a fixed table keeps `init` free of allocation failures.
#define MAX_PROTECTED 256

// Per instance: every instance has a linear memory, hence globals, of its own.
static uint32_t protected_ips[MAX_PROTECTED];
static size_t protected_count;
static uint32_t spoofed_counter;

// ---------------------------------------------------------------------------------------------
// Messages: a fixed buffer that appends truncate rather than overflow. Whatever goes in is
// ASCII, so that the text is valid UTF-8 whatever the config held (the host checks strings it
// lifts, and an invalid one is a failed call).

#define MSG_CAP 240
#define QUOTE_MAX 40

struct msg {
    char text[MSG_CAP];
    size_t len;
};

static void msg_char(struct msg *m, char c) {
    if (m->len < MSG_CAP) {
        m->text[m->len++] = c;
    }
}

static void msg_str(struct msg *m, const char *s) {
    while (*s != '\0') {
        msg_char(m, *s++);
    }
}

static void msg_uint(struct msg *m, uint64_t v) {
    char digits[20]; // 2^64 - 1 has 20
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0 && n < sizeof digits);
    while (n > 0) {
        msg_char(m, digits[--n]);
    }
}

// A config value, quoted, cut at QUOTE_MAX bytes; anything but printable ASCII (and the quote
// itself) becomes '?', so that a cut never splits a UTF-8 sequence.
static void msg_quoted(struct msg *m, const uint8_t *s, size_t n) {
    msg_char(m, '"');
    for (size_t i = 0; i < n && i < QUOTE_MAX; i++) {
        bool printable = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"';
        msg_char(m, printable ? (char)s[i] : '?');
    }
    if (n > QUOTE_MAX) {
        msg_str(m, "...");
    }
    msg_char(m, '"');
}

static void msg_ipv4(struct msg *m, uint32_t ip) {
    for (int shift = 24; shift >= 0; shift -= 8) {
        msg_uint(m, (ip >> shift) & 0xff);
        if (shift > 0) {
            msg_char(m, '.');
        }
    }
}

static void msg_mac(struct msg *m, uint64_t mac) {
    static const char hex[] = "0123456789abcdef";
    for (int shift = 40; shift >= 0; shift -= 8) {
        unsigned octet = (unsigned)((mac >> shift) & 0xff);
        msg_char(m, hex[octet >> 4]);
        msg_char(m, hex[octet & 0xf]);
        if (shift > 0) {
            msg_char(m, ':');
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The configuration: the JSON text of the `config` table, of exactly this shape:
//   {"protect": ["192.0.2.1", ...]}
// The parser reads only that. A field other than `protect` is refused before its value is
// read, so it never needs to skip arbitrary JSON; strings are taken as they are, and an escape
// sequence (which no address or field name of this shape needs) is refused.

struct parser {
    const uint8_t *s;
    size_t len;
    size_t pos;
    struct msg *err;
};

static void skip_ws(struct parser *p) {
    while (p->pos < p->len) {
        uint8_t c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
            return;
        }
        p->pos++;
    }
}

// The next byte after whitespace, without taking it; -1 at the end of the text.
static int peek(struct parser *p) {
    skip_ws(p);
    return p->pos < p->len ? p->s[p->pos] : -1;
}

static void error_at(struct parser *p, const char *where, const char *expected) {
    msg_str(p->err, where);
    msg_str(p->err, ": expected ");
    msg_str(p->err, expected);
    if (p->pos < p->len) {
        msg_str(p->err, " at byte ");
        msg_uint(p->err, p->pos);
    } else {
        msg_str(p->err, " before the end of the text");
    }
}

// Takes the byte `c` (after whitespace), or fails naming what was expected.
static bool take(struct parser *p, char c, const char *where, const char *expected) {
    if (peek(p) != (uint8_t)c) {
        error_at(p, where, expected);
        return false;
    }
    p->pos++;
    return true;
}

// A string without escapes: its bytes stay in the text, [*start, *start + *n).
static bool string(struct parser *p, const char *where, const uint8_t **start, size_t *n) {
    if (!take(p, '"', where, "a string")) {
        return false;
    }
    size_t begin = p->pos;
    while (p->pos < p->len && p->s[p->pos] != '"') {
        uint8_t c = p->s[p->pos];
        if (c == '\\') {
            msg_str(p->err, where);
            msg_str(p->err, ": escape sequences are not supported (byte ");
            msg_uint(p->err, p->pos);
            msg_char(p->err, ')');
            return false;
        }
        if (c < 0x20) {
            error_at(p, where, "a string without control characters");
            return false;
        }
        p->pos++;
    }
    if (p->pos >= p->len) {
        error_at(p, where, "the end of the string");
        return false;
    }
    *start = p->s + begin;
    *n = p->pos - begin;
    p->pos++; // the closing quote
    return true;
}

static bool equals(const uint8_t *s, size_t n, const char *literal) {
    size_t i = 0;
    for (; i < n; i++) {
        if (literal[i] == '\0' || (uint8_t)literal[i] != s[i]) {
            return false;
        }
    }
    return literal[i] == '\0';
}

// A dotted quad as Rust's `Ipv4Addr` reads one: four decimal numbers 0-255, one to three
// digits each, no leading zero (inet_aton would read "010" as octal 8: refuse, don't guess),
// nothing before or after. The result is big-endian as an integer, as `arp-meta` has it.
static bool parse_ipv4(const uint8_t *s, size_t n, uint32_t *out) {
    uint32_t ip = 0;
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= n || s[i] != '.') {
                return false;
            }
            i++;
        }
        size_t first = i;
        uint32_t value = 0;
        while (i < n && i - first < 3 && s[i] >= '0' && s[i] <= '9') {
            value = value * 10 + (uint32_t)(s[i] - '0');
            i++;
        }
        size_t digits = i - first;
        if (digits == 0 || value > 255 || (digits > 1 && s[first] == '0')) {
            return false;
        }
        ip = ip << 8 | value;
    }
    if (i != n) { // a fourth digit, a fifth part, anything after
        return false;
    }
    *out = ip;
    return true;
}

static void where_index(struct msg *m, size_t index) {
    msg_str(m, "config.protect[");
    msg_uint(m, index);
    msg_char(m, ']');
}

// `[ "a.b.c.d", ... ]` into protected_ips.
static bool parse_protect(struct parser *p) {
    if (!take(p, '[', "config.protect", "a list of IPv4 addresses, e.g. [\"192.0.2.1\"]")) {
        return false;
    }
    if (peek(p) == ']') {
        p->pos++;
        return true;
    }
    for (size_t index = 0;; index++) {
        const uint8_t *text;
        size_t n;
        if (peek(p) != '"') {
            where_index(p->err, index);
            msg_str(p->err, ": expected an IPv4 address as a string, e.g. \"192.0.2.1\"");
            return false;
        }
        if (!string(p, "config.protect", &text, &n)) {
            return false;
        }
        uint32_t ip;
        if (!parse_ipv4(text, n, &ip)) {
            where_index(p->err, index);
            msg_str(p->err, ": ");
            msg_quoted(p->err, text, n);
            msg_str(p->err, " is not an IPv4 address (a.b.c.d)");
            return false;
        }
        if (ip == 0) {
            // The sender address of every ARP probe (RFC 5227): guarding it would drop all.
            where_index(p->err, index);
            msg_str(p->err, ": 0.0.0.0 cannot be protected");
            return false;
        }
        if (protected_count == MAX_PROTECTED) {
            msg_str(p->err, "config.protect: more than ");
            msg_uint(p->err, MAX_PROTECTED);
            msg_str(p->err, " addresses");
            return false;
        }
        protected_ips[protected_count++] = ip;
        if (peek(p) == ']') {
            p->pos++;
            return true;
        }
        if (!take(p, ',', "config.protect", "',' or ']'")) {
            return false;
        }
    }
}

// The whole text: one object whose only field is `protect`, which it must have.
static bool parse_config(const uint8_t *text, size_t len, struct msg *err) {
    struct parser p = {.s = text, .len = len, .pos = 0, .err = err};
    bool seen = false;
    protected_count = 0;
    if (!take(&p, '{', "config", "a JSON object")) {
        return false;
    }
    if (peek(&p) == '}') {
        p.pos++;
    } else {
        for (;;) {
            const uint8_t *key;
            size_t n;
            if (!string(&p, "config", &key, &n)) {
                return false;
            }
            if (!equals(key, n, "protect")) {
                msg_str(err, "config: unknown field ");
                msg_quoted(err, key, n);
                msg_str(err, ", expected \"protect\"");
                return false;
            }
            if (seen) {
                msg_str(err, "config: duplicate field \"protect\"");
                return false;
            }
            seen = true;
            if (!take(&p, ':', "config", "':'") || !parse_protect(&p)) {
                return false;
            }
            if (peek(&p) == '}') {
                p.pos++;
                break;
            }
            if (!take(&p, ',', "config", "',' or '}'")) {
                return false;
            }
        }
    }
    if (peek(&p) != -1) {
        error_at(&p, "config", "nothing after the object");
        return false;
    }
    if (!seen) {
        msg_str(err, "config.protect: missing: list the IPv4 addresses of the VMs behind local "
                     "ports, e.g. protect = [\"192.0.2.1\"]");
        return false;
    }
    return true;
}

// ---------------------------------------------------------------------------------------------
// The hooks.

bool exports_wasm_vtep_plugin_hooks_init(plugin_string_t *config,
                                         exports_wasm_vtep_plugin_hooks_hook_set_t *ret,
                                         plugin_string_t *err) {
    struct msg m = {.len = 0};
    bool ok = parse_config(config->ptr, config->len, &m);
    plugin_string_free(config);
    if (!ok) {
        protected_count = 0;
        plugin_string_dup_n(err, m.text, m.len);
        return false;
    }
    plugin_string_t name;
    plugin_string_set(&name, "spoofed");
    spoofed_counter = wasm_vtep_plugin_host_counter(&name);
    // Only filter: the world makes learn and age exist, not the host call them.
    *ret = WASM_VTEP_PLUGIN_TYPES_HOOKS_FILTER;
    return true;
}

static bool is_protected(uint32_t ip) {
    for (size_t i = 0; i < protected_count; i++) {
        if (protected_ips[i] == ip) {
            return true;
        }
    }
    return false;
}

// An ARP packet that tells its receivers where `sender-ip` is: every request and reply does
// (RFC 826: a receiver updates, and a target creates, its entry for the sender, which is how
// a "who-has X tell <victim>" request poisons X's table as surely as a forged reply). RARP
// (ethertype 0x8035, opcodes 3 and 4) announces no IPv4 address and is left alone.
static bool announces(const frame_meta_t *f) {
    if (f->ethertype != ETHERTYPE_ARP || !f->arp.is_some) {
        return false;
    }
    const arp_meta_t *a = &f->arp.val;
    return a->opcode == ARP_REPLY || a->opcode == ARP_REQUEST;
}

static void log_spoof(const frame_meta_t *f) {
    const arp_meta_t *a = &f->arp.val;
    struct msg m = {.len = 0};
    msg_str(&m, "spoofed ARP dropped: ");
    msg_ipv4(&m, a->sender_ip);
    msg_str(&m, " is-at ");
    msg_mac(&m, a->sender_mac);
    msg_str(&m, a->opcode == ARP_REPLY                ? " (reply)"
                : a->sender_ip == a->target_ip ? " (gratuitous)"
                                               : " (request)");
    const wasm_vtep_plugin_types_location_t *source = &f->source;
    if (source->tag == WASM_VTEP_PLUGIN_TYPES_LOCATION_REMOTE &&
        source->val.remote.tag == WASM_VTEP_PLUGIN_TYPES_IP_ADDR_V4) {
        msg_str(&m, " from VTEP ");
        msg_ipv4(&m, source->val.remote.val.v4);
    }
    plugin_string_t text = {.ptr = (uint8_t *)m.text, .len = m.len};
    // Rate-limited per plugin by the host: one a frame is fine.
    wasm_vtep_plugin_host_log(WASM_VTEP_PLUGIN_TYPES_LEVEL_WARN, &text);
}

static filter_result_t verdict(const frame_meta_t *f, uint64_t *spoofed) {
    if (f->direction == WASM_VTEP_PLUGIN_TYPES_DIRECTION_FROM_UNDERLAY && announces(f) &&
        is_protected(f->arp.val.sender_ip)) {
        (*spoofed)++;
        log_spoof(f);
        return (filter_result_t){
            .verdict = {.tag = WASM_VTEP_PLUGIN_TYPES_VERDICT_DROP, .val = {.drop = REASON_SPOOFED}},
            .cache_secs = 0,
        };
    }
    return (filter_result_t){
        .verdict = {.tag = WASM_VTEP_PLUGIN_TYPES_VERDICT_PASS},
        .cache_secs = PASS_CACHE_SECS,
    };
}

void exports_wasm_vtep_plugin_hooks_filter(exports_wasm_vtep_plugin_hooks_list_frame_meta_t *frames,
                                           exports_wasm_vtep_plugin_hooks_list_filter_result_t *ret) {
    size_t n = frames->len;
    filter_result_t *results = NULL;
    if (n > 0) {
        // The host sends at most 64 frames; the check only keeps the multiplication honest.
        if (n > SIZE_MAX / sizeof *results) {
            abort();
        }
        results = malloc(n * sizeof *results);
        if (results == NULL) {
            abort(); // a trap: the host replaces the instance and applies on_error
        }
    }
    uint64_t spoofed = 0;
    for (size_t i = 0; i < n; i++) {
        results[i] = verdict(&frames->ptr[i], &spoofed);
    }
    if (spoofed > 0) {
        wasm_vtep_plugin_host_counter_add(spoofed_counter, spoofed); // once a batch
    }
    exports_wasm_vtep_plugin_hooks_list_frame_meta_free(frames);
    ret->ptr = results;
    ret->len = n;
}

exports_wasm_vtep_plugin_hooks_learn_decision_t
exports_wasm_vtep_plugin_hooks_learn(exports_wasm_vtep_plugin_hooks_learn_event_t *event) {
    // Never called: `init` does not claim the hook.
    exports_wasm_vtep_plugin_hooks_learn_event_free(event);
    return WASM_VTEP_PLUGIN_TYPES_LEARN_DECISION_ACCEPT;
}

void exports_wasm_vtep_plugin_hooks_age(exports_wasm_vtep_plugin_hooks_age_event_t *event,
                                        exports_wasm_vtep_plugin_hooks_age_decision_t *ret) {
    // Never called: `init` does not claim the hook.
    exports_wasm_vtep_plugin_hooks_age_event_free(event);
    ret->tag = WASM_VTEP_PLUGIN_TYPES_AGE_DECISION_EXPIRE;
}
