/*
 * test_codec.c - host tests (gcc) of codec.c against hardware/vectors.txt,
 * plus COBS/CRC/framer properties and the control.c state machine.
 * Usage: test_codec [path/to/vectors.txt]
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codec.h"
#include "control.h"

static int failures;
static int checks;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        checks++;                                                                                  \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            fprintf(stderr, "%s:%d: FAIL %s: ", __FILE__, __LINE__, #cond);                        \
            fprintf(stderr, __VA_ARGS__);                                                          \
            fputc('\n', stderr);                                                                   \
        }                                                                                          \
    } while (0)

/* ---- payload schema (field names of PROTOCOL.md) ---- */
typedef struct {
    const char *name;
    unsigned size; /* bytes */
    int is_signed;
} field_t;

typedef struct {
    const char *name;
    uint8_t type;
    const field_t *fields;
    unsigned nfields;
} msg_schema_t;

static const field_t drive_fields[] = {{"speed_mmps", 2, 1}, {"steer_mrad", 2, 1}};
static const field_t info_fields[] = {{"proto_version", 1, 0}, {"fw_major", 1, 0},
                                      {"fw_minor", 1, 0},      {"link_timeout_ms", 2, 0},
                                      {"drive_timeout_ms", 2, 0}};
static const field_t telemetry_fields[] = {
    {"state", 1, 0},          {"faults", 2, 0},       {"last_seq", 2, 0},
    {"wheel_speed_mmps", 2, 1}, {"speed_cmd_mmps", 2, 1}, {"steer_mrad", 2, 1},
    {"motor_duty", 2, 1},     {"battery_mv", 2, 0},   {"rx_errors", 2, 0},
    {"uptime_ms", 4, 0},      {"reset_cause", 1, 0}};
static const field_t fault_fields[] = {{"code", 1, 0}, {"detail", 2, 0}};

static const msg_schema_t schemas[] = {
    {"HELLO", MSG_HELLO, NULL, 0},
    {"ARM", MSG_ARM, NULL, 0},
    {"DISARM", MSG_DISARM, NULL, 0},
    {"DRIVE", MSG_DRIVE, drive_fields, 2},
    {"HEARTBEAT", MSG_HEARTBEAT, NULL, 0},
    {"ESTOP", MSG_ESTOP, NULL, 0},
    {"INFO", MSG_INFO, info_fields, 5},
    {"TELEMETRY", MSG_TELEMETRY, telemetry_fields, 11},
    {"FAULT", MSG_FAULT, fault_fields, 2},
};

static const msg_schema_t *schema_by_name(const char *name)
{
    for (size_t i = 0; i < sizeof schemas / sizeof schemas[0]; i++) {
        if (strcmp(schemas[i].name, name) == 0) {
            return &schemas[i];
        }
    }
    return NULL;
}

/* Symbolic values a vector may use instead of numbers. */
static int symbol_value(const char *s, long *out)
{
    static const struct {
        const char *name;
        long value;
    } symbols[] = {{"DISARMED", 0}, {"ARMED", 1}, {"ESTOP", 2}};
    for (size_t i = 0; i < sizeof symbols / sizeof symbols[0]; i++) {
        if (strcmp(symbols[i].name, s) == 0) {
            *out = symbols[i].value;
            return 1;
        }
    }
    return 0;
}

static long parse_value(const char *s, int *ok)
{
    char *end = NULL;
    long v = strtol(s, &end, 0);
    *ok = end != s && *end == '\0';
    if (!*ok) {
        *ok = symbol_value(s, &v);
    }
    return v;
}

static long read_field(const uint8_t *p, const field_t *f)
{
    uint32_t raw = 0;
    for (unsigned i = 0; i < f->size; i++) {
        raw |= (uint32_t)p[i] << (8 * i);
    }
    if (f->is_signed && f->size == 2) {
        return (long)(int16_t)(uint16_t)raw;
    }
    return (long)raw;
}

static void write_field(uint8_t *p, const field_t *f, long v)
{
    uint32_t raw = (uint32_t)v;
    for (unsigned i = 0; i < f->size; i++) {
        p[i] = (uint8_t)(raw >> (8 * i));
    }
}

static size_t unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = strlen(hex);
    if (n % 2 != 0 || n / 2 > cap) {
        return (size_t)-1;
    }
    for (size_t i = 0; i < n / 2; i++) {
        unsigned b;
        if (sscanf(hex + 2 * i, "%2x", &b) != 1) {
            return (size_t)-1;
        }
        out[i] = (uint8_t)b;
    }
    return n / 2;
}

static const char *reason_name(codec_status_t st)
{
    switch (st) {
    case CODEC_OK:
        return "ok";
    case CODEC_ERR_FRAME:
        return "frame";
    case CODEC_ERR_CRC:
        return "crc";
    case CODEC_ERR_VERSION:
        return "version";
    case CODEC_ERR_TYPE:
        return "type";
    case CODEC_ERR_LENGTH:
        return "length";
    }
    return "?";
}

/* Decode the first frame of wire through the framer, like the firmware. */
static codec_status_t decode_wire(const uint8_t *wire, size_t n, codec_dir_t dir, packet_t *pkt)
{
    framer_t f;
    uint16_t detail;
    framer_init(&f);
    for (size_t i = 0; i < n; i++) {
        int r = framer_feed(&f, wire[i]);
        if (r < 0) {
            return CODEC_ERR_FRAME;
        }
        if (r > 0) {
            return codec_decode(f.buf, f.len, dir, pkt, &detail);
        }
    }
    return CODEC_ERR_FRAME; /* no delimiter: never a frame */
}

static void check_vector(const char *name, const char *dir_name, const char *wire_hex,
                         char *expect)
{
    uint8_t wire[512];
    size_t n = unhex(wire_hex, wire, sizeof wire);
    CHECK(n != (size_t)-1, "%s: bad hex", name);
    if (n == (size_t)-1) {
        return;
    }
    int h2m = strcmp(dir_name, "h2m") == 0;
    CHECK(h2m || strcmp(dir_name, "m2h") == 0, "%s: direction %s", name, dir_name);
    packet_t pkt;
    codec_status_t st = decode_wire(wire, n, h2m ? CODEC_H2M : CODEC_M2H, &pkt);
    char *save = NULL;
    char *word = strtok_r(expect, " ", &save);
    if (word != NULL && strcmp(word, "error") == 0) {
        const char *reason = strtok_r(NULL, " ", &save);
        CHECK(reason != NULL && strcmp(reason_name(st), reason) == 0, "%s: got %s, want error %s",
              name, reason_name(st), reason ? reason : "?");
        return;
    }
    CHECK(word != NULL && strcmp(word, "ok") == 0, "%s: expect must start ok/error", name);
    const char *type_name = strtok_r(NULL, " ", &save);
    const msg_schema_t *schema = type_name ? schema_by_name(type_name) : NULL;
    CHECK(schema != NULL, "%s: unknown type %s", name, type_name ? type_name : "?");
    CHECK(st == CODEC_OK, "%s: decode failed: %s", name, reason_name(st));
    if (schema == NULL || st != CODEC_OK) {
        return;
    }
    CHECK(pkt.type == schema->type, "%s: type 0x%02x, want 0x%02x", name, pkt.type, schema->type);

    uint8_t payload[PKT_MAX_PAYLOAD] = {0};
    long seq = -1;
    unsigned seen = 0;
    for (char *kv = strtok_r(NULL, " ", &save); kv; kv = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(kv, '=');
        CHECK(eq != NULL, "%s: bad field %s", name, kv);
        if (eq == NULL) {
            continue;
        }
        *eq = '\0';
        int ok;
        long want = parse_value(eq + 1, &ok);
        CHECK(ok, "%s: bad value %s=%s", name, kv, eq + 1);
        if (strcmp(kv, "seq") == 0) {
            seq = want;
            CHECK(pkt.seq == want, "%s: seq %u, want %ld", name, pkt.seq, want);
            continue;
        }
        unsigned off = 0;
        int found = 0;
        for (unsigned i = 0; i < schema->nfields; i++) {
            const field_t *f = &schema->fields[i];
            if (strcmp(f->name, kv) == 0) {
                long got = read_field(pkt.payload + off, f);
                CHECK(got == want, "%s: %s=%ld, want %ld", name, kv, got, want);
                write_field(payload + off, f, want);
                found = 1;
                seen++;
            }
            off += f->size;
        }
        CHECK(found, "%s: field %s not in %s", name, kv, schema->name);
    }
    CHECK(seq >= 0, "%s: no seq", name);
    CHECK(seen == schema->nfields, "%s: %u of %u fields given", name, seen, schema->nfields);

    uint8_t out[FRAME_MAX_WIRE];
    size_t m = codec_encode(schema->type, (uint16_t)seq, payload, pkt.payload_len, out);
    CHECK(m == n && memcmp(out, wire, n) == 0, "%s: encode differs from wire_hex", name);
}

static int run_vectors(const char *path)
{
    FILE *fp = fopen(path, "r");
    if (fp == NULL) {
        fprintf(stderr, "cannot open vectors file %s\n", path);
        return -1;
    }
    char line[2048];
    int count = 0;
    int lineno = 0;
    while (fgets(line, sizeof line, fp)) {
        lineno++;
        line[strcspn(line, "\r\n")] = '\0';
        if (line[0] == '#' || line[0] == '\0') {
            continue;
        }
        char *fields[4];
        int nf = 0;
        char *p = line;
        while (nf < 4) {
            fields[nf++] = p;
            char *tab = strchr(p, '\t');
            if (tab == NULL) {
                break;
            }
            *tab = '\0';
            p = tab + 1;
        }
        CHECK(nf == 4, "%s:%d: want 4 tab-separated fields", path, lineno);
        if (nf != 4) {
            continue;
        }
        check_vector(fields[0], fields[1], fields[2], fields[3]);
        count++;
    }
    fclose(fp);
    return count;
}

/* ---- codec properties ---- */
static void test_crc(void)
{
    const uint8_t check[] = "123456789";
    CHECK(crc16_xmodem(check, 9, 0) == 0x31c3u, "crc 0x%04x", crc16_xmodem(check, 9, 0));
}

static void test_cobs_roundtrip(void)
{
    uint8_t in[PKT_MAX_LEN], enc[PKT_MAX_LEN + 2], dec[PKT_MAX_LEN];
    unsigned rng = 12345;
    for (int trial = 0; trial < 2000; trial++) {
        size_t n = (size_t)trial % (PKT_MAX_LEN + 1u);
        for (size_t i = 0; i < n; i++) {
            rng = rng * 1103515245u + 12345u;
            in[i] = (trial % 3 == 0) ? 0 : (uint8_t)(rng >> 16);
        }
        size_t m = cobs_encode(in, n, enc);
        CHECK(m <= n + 1, "cobs overhead %zu for %zu", m, n);
        CHECK(memchr(enc, 0, m) == NULL, "zero in cobs output");
        int d = cobs_decode(enc, m, dec, sizeof dec);
        CHECK(d == (int)n && memcmp(in, dec, n) == 0, "cobs roundtrip n=%zu", n);
    }
}

static void test_framer_resync(void)
{
    uint8_t frame[FRAME_MAX_WIRE];
    uint8_t payload[4] = {0xdc, 0x05, 0x88, 0xff};
    size_t n = codec_encode(MSG_DRIVE, 7, payload, 4, frame);
    /* garbage, a long run without delimiter, a truncated frame, then a frame */
    uint8_t stream[300];
    size_t s = 0;
    for (int i = 0; i < 100; i++) {
        stream[s++] = (uint8_t)(i * 37 + 1) ? (uint8_t)(i * 37 + 1) : 1;
    }
    stream[s++] = 0;
    memcpy(stream + s, frame, n - 4); /* truncated */
    s += n - 4;
    stream[s++] = 0;
    memcpy(stream + s, frame, n);
    s += n;
    framer_t f;
    framer_init(&f);
    int errors = 0, good = 0;
    for (size_t i = 0; i < s; i++) {
        int r = framer_feed(&f, stream[i]);
        if (r < 0) {
            errors++;
        } else if (r > 0) {
            packet_t pkt;
            uint16_t detail;
            if (codec_decode(f.buf, f.len, CODEC_H2M, &pkt, &detail) == CODEC_OK) {
                good++;
                CHECK(pkt.seq == 7 && pkt.type == MSG_DRIVE, "resynced frame content");
            } else {
                errors++;
            }
            framer_init(&f);
        }
    }
    CHECK(good == 1 && errors == 2, "good=%d errors=%d", good, errors);
}

/* ---- control state machine ---- */
static packet_t pkt_of(uint8_t type, uint16_t seq, int16_t speed, int16_t steer)
{
    packet_t p;
    memset(&p, 0, sizeof p);
    p.version = PROTO_VERSION;
    p.type = type;
    p.seq = seq;
    p.payload_len = (uint8_t)codec_payload_len(type);
    put_u16(p.payload, (uint16_t)speed);
    put_u16(p.payload + 2, (uint16_t)steer);
    return p;
}

static int has_fault(ctl_t *c, uint8_t code)
{
    ctl_fault_t f;
    int found = 0;
    while (ctl_pop_fault(c, &f)) {
        found |= f.code == code;
    }
    return found;
}

static void test_control(void)
{
    ctl_t c;
    uint32_t t = 1000;
    ctl_init(&c, RESET_POWER_ON, t);
    packet_t p = pkt_of(MSG_HELLO, 500, 0, 0);
    ctl_on_packet(&c, &p, t);
    CHECK(c.info_pending && c.state == STATE_DISARMED, "hello -> info");
    p = pkt_of(MSG_DRIVE, 501, 1500, 0);
    ctl_on_packet(&c, &p, t);
    CHECK(ctl_motor_duty_permille(&c) == 0, "drive while disarmed has no effect");
    p = pkt_of(MSG_ARM, 502, 0, 0);
    ctl_on_packet(&c, &p, t);
    CHECK(c.state == STATE_ARMED, "armed");
    p = pkt_of(MSG_DRIVE, 503, -1500, 250);
    ctl_on_packet(&c, &p, t);
    CHECK(ctl_motor_duty_permille(&c) == -500, "duty %d", ctl_motor_duty_permille(&c));
    CHECK(ctl_servo_us(&c) == 1750, "servo %u", ctl_servo_us(&c));

    /* commands every 20 ms for 2 s: no watchdog */
    uint16_t seq = 504;
    for (int i = 0; i < 100; i++) {
        t += 20;
        p = pkt_of(MSG_DRIVE, seq++, 600, 0);
        ctl_on_packet(&c, &p, t);
        ctl_tick(&c, t, 0, 12000);
    }
    CHECK(c.state == STATE_ARMED && ctl_motor_duty_permille(&c) == 200, "flowing commands");
    CHECK(!(ctl_faults(&c) & (FAULT_BIT_LINK_TIMEOUT | FAULT_BIT_DRIVE_TIMEOUT)), "no timeout");

    /* duplicate and old seq rejected */
    uint16_t errs = c.rx_errors;
    p = pkt_of(MSG_DRIVE, (uint16_t)(seq - 1), 3000, 0);
    ctl_on_packet(&c, &p, t);
    p = pkt_of(MSG_DRIVE, (uint16_t)(seq - 100), 3000, 0);
    ctl_on_packet(&c, &p, t);
    CHECK(c.rx_errors == errs + 2 && ctl_motor_duty_permille(&c) == 200, "seq check");

    /* heartbeats keep the link but not the drive setpoint */
    uint32_t t0 = t;
    while (t - t0 < 260) {
        t += 20;
        p = pkt_of(MSG_HEARTBEAT, seq++, 0, 0);
        ctl_on_packet(&c, &p, t);
        ctl_tick(&c, t, 0, 12000);
    }
    CHECK(c.state == STATE_ARMED && (ctl_faults(&c) & FAULT_BIT_DRIVE_TIMEOUT), "drive timeout");
    CHECK(ctl_motor_duty_permille(&c) == 0 && ctl_servo_us(&c) == 1500, "outputs zero");
    p = pkt_of(MSG_DRIVE, seq++, 9000, -900);
    ctl_on_packet(&c, &p, t);
    CHECK(ctl_motor_duty_permille(&c) == 1000 && ctl_servo_us(&c) == 1000, "clamped drive");
    CHECK((ctl_faults(&c) & FAULT_BIT_CLAMPED) && !(ctl_faults(&c) & FAULT_BIT_DRIVE_TIMEOUT),
          "clamped bit, drive timeout cleared");

    /* silence: link watchdog at 200 ms, not before */
    t0 = t;
    ctl_tick(&c, t0 + LINK_TIMEOUT_MS - 1, 0, 12000);
    CHECK(c.state == STATE_ARMED, "no link timeout at 199 ms");
    ctl_tick(&c, t0 + LINK_TIMEOUT_MS, 0, 12000);
    CHECK(c.state == STATE_DISARMED && (ctl_faults(&c) & FAULT_BIT_LINK_TIMEOUT), "link timeout");
    CHECK(has_fault(&c, FAULT_LINK_TIMEOUT), "LINK_TIMEOUT fault sent");
    t = t0 + 300;
    p = pkt_of(MSG_DRIVE, seq++, 1000, 0);
    ctl_on_packet(&c, &p, t);
    CHECK(ctl_motor_duty_permille(&c) == 0, "stays disarmed after link returns");

    /* e-stop pin latch: ARM refused while held, allowed after release */
    p = pkt_of(MSG_ARM, seq++, 0, 0);
    ctl_on_packet(&c, &p, t);
    ctl_tick(&c, t, 1, 12000);
    CHECK(c.state == STATE_ESTOP && has_fault(&c, FAULT_ESTOP_PIN), "pin -> estop");
    p = pkt_of(MSG_ARM, seq++, 0, 0);
    ctl_on_packet(&c, &p, t);
    CHECK(c.state == STATE_ESTOP && has_fault(&c, FAULT_ARM_REFUSED), "arm refused");
    ctl_tick(&c, t, 0, 12000);
    CHECK(c.state == STATE_ESTOP && (ctl_faults(&c) & FAULT_BIT_ESTOP_LATCHED), "still latched");
    p = pkt_of(MSG_ARM, seq++, 0, 0);
    ctl_on_packet(&c, &p, t);
    CHECK(c.state == STATE_ARMED && ctl_faults(&c) == 0, "re-armed, faults 0x%x", ctl_faults(&c));

    /* watchdog reset cause */
    ctl_init(&c, RESET_WATCHDOG, 0);
    uint8_t tel[PAYLOAD_LEN_TELEMETRY];
    ctl_telemetry_payload(&c, tel, 0, 12000, 20);
    CHECK(tel[21] == RESET_WATCHDOG && (get_u16(tel + 1) & FAULT_BIT_WDT_RESET), "wdt reset");
    CHECK(has_fault(&c, FAULT_WDT_RESET), "WDT_RESET fault with first telemetry");
}

/* Tiny setpoints: off below one PWM step, never a wrapped (full) compare value. */
static void test_motor_pwm(void)
{
    CHECK(MOTOR_DUTY_MIN_PERMILLE == 4u, "min duty %u", (unsigned)MOTOR_DUTY_MIN_PERMILLE);
    uint16_t prev = 0;
    for (int32_t d = 0; d <= 1000; d++) {
        uint16_t up = ctl_motor_pwm_steps((int16_t)d);
        uint16_t down = ctl_motor_pwm_steps((int16_t)-d);
        CHECK(up == down, "steps symmetric at %d", (int)d);
        CHECK(up >= prev && up <= MOTOR_PWM_STEPS, "steps monotonic at %d: %u", (int)d, up);
        CHECK((up == 0) == (d < (int32_t)MOTOR_DUTY_MIN_PERMILLE), "off iff < a step: %d",
              (int)d);
        prev = up;
    }
    CHECK(ctl_motor_pwm_steps(4) == 1 && ctl_motor_pwm_steps(1000) == MOTOR_PWM_STEPS,
          "first and last step");
    CHECK(ctl_motor_pwm_steps(INT16_MIN) == MOTOR_PWM_STEPS, "out of range is capped");

    ctl_t c;
    ctl_init(&c, RESET_POWER_ON, 0);
    packet_t p = pkt_of(MSG_ARM, 1, 0, 0);
    ctl_on_packet(&c, &p, 0);
    uint16_t seq = 2;
    int16_t prev_duty = -1000;
    for (int32_t v = -SPEED_LIMIT_MMPS; v <= SPEED_LIMIT_MMPS; v++) {
        p = pkt_of(MSG_DRIVE, seq++, (int16_t)v, 0);
        ctl_on_packet(&c, &p, 0);
        int16_t duty = ctl_motor_duty_permille(&c);
        CHECK(duty >= prev_duty, "duty monotonic at %d mm/s: %d", (int)v, duty);
        CHECK((duty == 0) == (v >= -11 && v <= 11), "off iff |v| <= 11: %d -> %d", (int)v, duty);
        CHECK((duty == 0) == (ctl_motor_pwm_steps(duty) == 0), "telemetry duty matches PWM");
        prev_duty = duty;
    }
    p = pkt_of(MSG_DRIVE, seq++, 12, 0);
    ctl_on_packet(&c, &p, 0);
    CHECK(ctl_motor_duty_permille(&c) == 4, "12 mm/s is one step");
}

/* An e-stop edge seen by the ISR latches even when the pin is high again at the tick. */
static void test_estop_edge(void)
{
    ctl_t c;
    ctl_init(&c, RESET_POWER_ON, 0);
    packet_t p = pkt_of(MSG_ARM, 1, 0, 0);
    ctl_on_packet(&c, &p, 0);
    p = pkt_of(MSG_DRIVE, 2, 1500, 0);
    ctl_on_packet(&c, &p, 0);
    ctl_tick(&c, 1, 1, 12000); /* main.c: pin high again, but estop_irq was set */
    CHECK(c.state == STATE_ESTOP && ctl_motor_duty_permille(&c) == 0, "edge latches");
    CHECK(has_fault(&c, FAULT_ESTOP_PIN), "ESTOP_PIN fault for the edge");
    ctl_tick(&c, 2, 0, 12000);
    p = pkt_of(MSG_DRIVE, 3, 1500, 0);
    ctl_on_packet(&c, &p, 2);
    CHECK(c.state == STATE_ESTOP && ctl_faults(&c) == FAULT_BIT_ESTOP_LATCHED,
          "latched, pin released: faults 0x%x", ctl_faults(&c));
    CHECK(ctl_motor_duty_permille(&c) == 0, "DRIVE ignored while latched");
    p = pkt_of(MSG_ARM, 4, 0, 0);
    ctl_on_packet(&c, &p, 3);
    p = pkt_of(MSG_DRIVE, 5, 1500, 0);
    ctl_on_packet(&c, &p, 3);
    CHECK(c.state == STATE_ARMED && ctl_motor_duty_permille(&c) == 500, "ARM re-arms");
}

int main(int argc, char **argv)
{
    const char *path = argc > 1 ? argv[1] : "../vectors.txt";
    test_crc();
    test_cobs_roundtrip();
    test_framer_resync();
    test_control();
    test_motor_pwm();
    test_estop_edge();
    int vectors = run_vectors(path);
    CHECK(vectors > 0, "no vectors read from %s", path);
    printf("test_codec: %d checks, %d vectors, %d failures\n", checks, vectors, failures);
    return failures ? 1 : 0;
}
