/* control.c - see control.h. Portable C99, no AVR headers. */
#include "control.h"

static void push_fault(ctl_t *c, uint8_t code, uint16_t detail)
{
    if (c->fault_count < CTL_FAULT_QUEUE) {
        c->faults[c->fault_count].code = code;
        c->faults[c->fault_count].detail = detail;
        c->fault_count++;
    }
}

static void outputs_off(ctl_t *c)
{
    c->speed_cmd_mmps = 0;
    c->steer_mrad = 0;
    c->drive_active = 0;
}

static void enter_estop(ctl_t *c, uint8_t fault_code)
{
    c->state = STATE_ESTOP;
    c->latched |= FAULT_BIT_ESTOP_LATCHED;
    outputs_off(c);
    push_fault(c, fault_code, 0);
}

/* Error FAULTs (codes 1..5) at most one per FAULT_RATE_LIMIT_MS. */
static void error_fault(ctl_t *c, uint8_t code, uint16_t detail, uint32_t now_ms)
{
    c->rx_errors++;
    if (c->error_fault_sent && (uint32_t)(now_ms - c->last_error_fault_ms) < FAULT_RATE_LIMIT_MS) {
        return;
    }
    c->error_fault_sent = 1;
    c->last_error_fault_ms = now_ms;
    push_fault(c, code, detail);
}

void ctl_init(ctl_t *c, uint8_t reset_cause, uint32_t now_ms)
{
    uint8_t *raw = (uint8_t *)c;
    for (uint16_t i = 0; i < sizeof *c; i++) {
        raw[i] = 0;
    }
    c->state = STATE_DISARMED;
    c->reset_cause = reset_cause;
    c->last_valid_ms = now_ms;
    c->last_drive_ms = now_ms;
    c->link_expired = 1; /* nothing to time out before the first frame */
    if (reset_cause == RESET_WATCHDOG) {
        c->latched |= FAULT_BIT_WDT_RESET;
        c->wdt_fault_pending = 1;
    }
}

static int16_t clamp16(int16_t v, int16_t limit, uint8_t *clamped)
{
    if (v > limit) {
        *clamped = 1;
        return limit;
    }
    if (v < -limit) {
        *clamped = 1;
        return (int16_t)-limit;
    }
    return v;
}

static void on_arm(ctl_t *c, uint32_t now_ms)
{
    if (c->estop_pin) {
        push_fault(c, FAULT_ARM_REFUSED, ctl_faults(c));
        return;
    }
    if (c->state == STATE_ARMED) {
        return; /* already armed: keep the setpoint in force */
    }
    c->state = STATE_ARMED;
    c->latched = 0;
    c->last_drive_ms = now_ms;
    outputs_off(c);
}

static void on_drive(ctl_t *c, const packet_t *p, uint32_t now_ms)
{
    uint8_t clamped = 0;
    int16_t speed = clamp16((int16_t)get_u16(p->payload), SPEED_LIMIT_MMPS, &clamped);
    int16_t steer = clamp16((int16_t)get_u16(p->payload + 2), STEER_LIMIT_MRAD, &clamped);
    if (clamped) {
        c->latched |= FAULT_BIT_CLAMPED;
    } else {
        c->latched &= (uint16_t)~FAULT_BIT_CLAMPED;
    }
    if (c->state != STATE_ARMED) {
        return;
    }
    c->last_drive_ms = now_ms;
    c->latched &= (uint16_t)~FAULT_BIT_DRIVE_TIMEOUT;
    c->speed_cmd_mmps = speed;
    c->steer_mrad = steer;
    c->drive_active = 1;
}

void ctl_on_packet(ctl_t *c, const packet_t *p, uint32_t now_ms)
{
    if (p->type == MSG_HELLO) {
        c->seq_valid = 1;
        c->last_seq = p->seq;
    } else {
        uint16_t ahead = (uint16_t)(p->seq - c->last_seq);
        if (c->seq_valid && (ahead == 0 || ahead >= 0x8000u)) {
            error_fault(c, FAULT_SEQ_ERROR, p->seq, now_ms);
            return;
        }
        c->seq_valid = 1;
        c->last_seq = p->seq;
    }
    c->last_valid_ms = now_ms;
    c->link_expired = 0;

    switch (p->type) {
    case MSG_HELLO:
        c->info_pending = 1;
        break;
    case MSG_ARM:
        on_arm(c, now_ms);
        break;
    case MSG_DISARM:
        /* A latched e-stop is only left through ARM. */
        if (c->state == STATE_ARMED) {
            c->state = STATE_DISARMED;
        }
        outputs_off(c);
        break;
    case MSG_DRIVE:
        on_drive(c, p, now_ms);
        break;
    case MSG_ESTOP:
        enter_estop(c, FAULT_ESTOP_CMD);
        break;
    default: /* HEARTBEAT: the link is alive, nothing else */
        break;
    }
}

void ctl_on_decode_error(ctl_t *c, codec_status_t status, uint16_t detail, uint32_t now_ms)
{
    static const uint8_t code_of[] = {
        0, FAULT_FRAME_ERROR, FAULT_CRC_ERROR, FAULT_BAD_VERSION, FAULT_UNKNOWN_TYPE,
        FAULT_FRAME_ERROR,
    };
    if (status == CODEC_OK || (unsigned)status >= sizeof code_of) {
        return;
    }
    error_fault(c, code_of[status], detail, now_ms);
}

void ctl_tick(ctl_t *c, uint32_t now_ms, uint8_t estop_active, uint16_t battery_mv)
{
    if (estop_active && !c->estop_pin) {
        enter_estop(c, FAULT_ESTOP_PIN);
    }
    c->estop_pin = estop_active ? 1 : 0;
    c->low_battery = battery_mv < LOW_BATTERY_MV ? 1 : 0;

    uint32_t silent_ms = (uint32_t)(now_ms - c->last_valid_ms);
    if (!c->link_expired && silent_ms >= LINK_TIMEOUT_MS) {
        c->link_expired = 1;
        if (c->state == STATE_ARMED) {
            c->state = STATE_DISARMED;
            c->latched |= FAULT_BIT_LINK_TIMEOUT;
            push_fault(c, FAULT_LINK_TIMEOUT, silent_ms > 0xffffu ? 0xffffu : (uint16_t)silent_ms);
        }
        outputs_off(c);
    }
    if (c->state == STATE_ARMED && (uint32_t)(now_ms - c->last_drive_ms) >= DRIVE_TIMEOUT_MS) {
        c->latched |= FAULT_BIT_DRIVE_TIMEOUT;
        outputs_off(c);
    }
}

uint16_t ctl_faults(const ctl_t *c)
{
    uint16_t bits = c->latched;
    if (c->estop_pin) {
        bits |= FAULT_BIT_ESTOP_PIN;
    }
    if (c->low_battery) {
        bits |= FAULT_BIT_LOW_BATTERY;
    }
    return bits;
}

int16_t ctl_motor_duty_permille(const ctl_t *c)
{
    if (c->state != STATE_ARMED || !c->drive_active) {
        return 0;
    }
    int32_t duty = (int32_t)c->speed_cmd_mmps * 1000 / SPEED_LIMIT_MMPS;
    int32_t mag = duty < 0 ? -duty : duty;
    if (mag < (int32_t)MOTOR_DUTY_MIN_PERMILLE) {
        return 0; /* below one PWM step: off, never a wrapped compare value */
    }
    return (int16_t)duty;
}

uint16_t ctl_motor_pwm_steps(int16_t duty_permille)
{
    uint32_t mag = (uint32_t)(duty_permille < 0 ? -(int32_t)duty_permille : duty_permille);
    uint32_t steps = mag * MOTOR_PWM_STEPS / 1000u;
    return (uint16_t)(steps > MOTOR_PWM_STEPS ? MOTOR_PWM_STEPS : steps);
}

uint16_t ctl_servo_us(const ctl_t *c)
{
    int16_t steer = (c->state == STATE_ARMED && c->drive_active) ? c->steer_mrad : 0;
    return (uint16_t)(SERVO_CENTRE_US + (int32_t)steer * SERVO_SPAN_US / STEER_LIMIT_MRAD);
}

uint8_t ctl_pop_fault(ctl_t *c, ctl_fault_t *out)
{
    if (c->fault_count == 0) {
        return 0;
    }
    *out = c->faults[0];
    for (uint8_t i = 1; i < c->fault_count; i++) {
        c->faults[i - 1] = c->faults[i];
    }
    c->fault_count--;
    return 1;
}

void ctl_info_payload(uint8_t *out)
{
    out[0] = PROTO_VERSION;
    out[1] = FW_MAJOR;
    out[2] = FW_MINOR;
    put_u16(out + 3, LINK_TIMEOUT_MS);
    put_u16(out + 5, DRIVE_TIMEOUT_MS);
}

void ctl_telemetry_payload(ctl_t *c, uint8_t *out, int16_t wheel_speed_mmps,
                           uint16_t battery_mv, uint32_t uptime_ms)
{
    uint8_t active = c->state == STATE_ARMED && c->drive_active;
    out[0] = c->state;
    put_u16(out + 1, ctl_faults(c));
    put_u16(out + 3, c->last_seq);
    put_u16(out + 5, (uint16_t)wheel_speed_mmps);
    put_u16(out + 7, (uint16_t)(active ? c->speed_cmd_mmps : 0));
    put_u16(out + 9, (uint16_t)(active ? c->steer_mrad : 0));
    put_u16(out + 11, (uint16_t)ctl_motor_duty_permille(c));
    put_u16(out + 13, battery_mv);
    put_u16(out + 15, c->rx_errors);
    put_u32(out + 17, uptime_ms);
    out[21] = c->reset_cause;
    if (c->wdt_fault_pending) {
        c->wdt_fault_pending = 0;
        push_fault(c, FAULT_WDT_RESET, 0);
    }
}
