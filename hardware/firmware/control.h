/*
 * control.h - the protocol state machine of the motor controller: sequence
 * checks, ARM/DISARM/ESTOP, link and drive watchdogs, fault bits and FAULT
 * events, setpoint clamping, telemetry packing.
 *
 * Sans-I/O and portable: it takes decoded packets, decode errors, input
 * levels and a millisecond clock, and leaves the frames to send and the
 * outputs to apply in the struct. main.c moves bytes and drives the pins.
 */
#ifndef TELEDRIVE_CONTROL_H
#define TELEDRIVE_CONTROL_H

#include <stdint.h>

#include "codec.h"

#define FW_MAJOR 1u
#define FW_MINOR 0u
#define LINK_TIMEOUT_MS 180u /* motors off within 200 ms of the host's last frame, with margin */
#define DRIVE_TIMEOUT_MS 200u
#define TELEMETRY_PERIOD_MS 20u
#define FAULT_RATE_LIMIT_MS 100u
#define SPEED_LIMIT_MMPS 3000
#define STEER_LIMIT_MRAD 500
#define LOW_BATTERY_MV 10500u
#define SERVO_CENTRE_US 1500
#define SERVO_SPAN_US 500 /* +-500 us for +-STEER_LIMIT_MRAD */
#define MOTOR_PWM_STEPS 256u /* Timer2, 8-bit fast PWM: one step is 3.9 per mille */
/* The smallest duty the PWM can produce (one step, rounded up to per-mille); a smaller
 * duty is off, both in the outputs and in telemetry (|speed| <= 11 mm/s). */
#define MOTOR_DUTY_MIN_PERMILLE ((1000u + MOTOR_PWM_STEPS - 1u) / MOTOR_PWM_STEPS)

enum { STATE_DISARMED = 0, STATE_ARMED = 1, STATE_ESTOP = 2 };

enum {
    FAULT_BIT_ESTOP_PIN = 1u << 0,
    FAULT_BIT_ESTOP_LATCHED = 1u << 1,
    FAULT_BIT_LINK_TIMEOUT = 1u << 2,
    FAULT_BIT_DRIVE_TIMEOUT = 1u << 3,
    FAULT_BIT_WDT_RESET = 1u << 4,
    FAULT_BIT_LOW_BATTERY = 1u << 5,
    FAULT_BIT_CLAMPED = 1u << 6
};

enum {
    FAULT_CRC_ERROR = 1,
    FAULT_FRAME_ERROR = 2,
    FAULT_BAD_VERSION = 3,
    FAULT_UNKNOWN_TYPE = 4,
    FAULT_SEQ_ERROR = 5,
    FAULT_LINK_TIMEOUT = 6,
    FAULT_ESTOP_PIN = 7,
    FAULT_ESTOP_CMD = 8,
    FAULT_WDT_RESET = 9,
    FAULT_ARM_REFUSED = 10
};

enum { RESET_POWER_ON = 0, RESET_WATCHDOG = 1, RESET_EXTERNAL = 2 };

#define CTL_FAULT_QUEUE 4u

typedef struct {
    uint8_t code;
    uint16_t detail;
} ctl_fault_t;

typedef struct {
    uint8_t state;
    uint16_t latched; /* fault bits that stay until ARM (or DRIVE) */
    uint8_t estop_pin; /* 1 while the e-stop input is active */
    uint8_t low_battery;
    uint8_t reset_cause;

    uint8_t seq_valid; /* a host frame was accepted since boot */
    uint16_t last_seq;
    uint16_t rx_errors;

    uint32_t last_valid_ms;
    uint32_t last_drive_ms;
    uint8_t link_expired; /* the link watchdog fired for this silence */
    uint8_t drive_active; /* a DRIVE setpoint is in force */

    int16_t speed_cmd_mmps; /* setpoint in force, 0 when outputs are off */
    int16_t steer_mrad;

    uint32_t last_error_fault_ms; /* rate limit of FAULT codes 1..5 */
    uint8_t error_fault_sent;

    ctl_fault_t faults[CTL_FAULT_QUEUE]; /* FAULT events to send */
    uint8_t fault_count;
    uint8_t info_pending; /* INFO to send (answer to HELLO) */
    uint8_t wdt_fault_pending; /* WDT_RESET fault goes with the first telemetry */
} ctl_t;

void ctl_init(ctl_t *c, uint8_t reset_cause, uint32_t now_ms);

/* A frame decoded without error. */
void ctl_on_packet(ctl_t *c, const packet_t *p, uint32_t now_ms);

/* A frame dropped by the decoder (status != CODEC_OK). */
void ctl_on_decode_error(ctl_t *c, codec_status_t status, uint16_t detail, uint32_t now_ms);

/* Input levels; call often (every ms). estop_active: the pin is low now, or went low
 * (the INT1 edge) since the last call: a pulse shorter than a main-loop pass latches too. */
void ctl_tick(ctl_t *c, uint32_t now_ms, uint8_t estop_active, uint16_t battery_mv);

uint16_t ctl_faults(const ctl_t *c);

/* Outputs in force. The duty is 0 below MOTOR_DUTY_MIN_PERMILLE (one PWM step). */
int16_t ctl_motor_duty_permille(const ctl_t *c);
uint16_t ctl_servo_us(const ctl_t *c);

/* PWM steps (0..MOTOR_PWM_STEPS) for a duty: high for steps/256 of a period, 0 = off.
 * Monotonic in |duty|; never wraps. The compare register takes steps - 1. */
uint16_t ctl_motor_pwm_steps(int16_t duty_permille);

/* Pops the next pending FAULT event; returns 0 when there is none. */
uint8_t ctl_pop_fault(ctl_t *c, ctl_fault_t *out);

/* Payload builders; buffers of PAYLOAD_LEN_INFO / PAYLOAD_LEN_TELEMETRY. */
void ctl_info_payload(uint8_t *out);
void ctl_telemetry_payload(ctl_t *c, uint8_t *out, int16_t wheel_speed_mmps,
                           uint16_t battery_mv, uint32_t uptime_ms);

#endif
