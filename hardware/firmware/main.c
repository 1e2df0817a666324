/*
 * main.c - motor-controller firmware for the ATmega328P @ 16 MHz
 * (Arduino Uno/Nano pin-out), protocol hardware/PROTOCOL.md.
 *
 * Interrupts only move bytes and count edges; all decisions are taken by
 * control.c in the main loop, which wakes at least every millisecond
 * (Timer0 tick), feeds the AVR watchdog and sleeps (idle) when done.
 * The e-stop input also cuts the motor directly from its interrupt and leaves
 * a flag, so that the main loop latches ESTOP even when the pin is high again.
 */
#include <avr/interrupt.h>
#include <avr/io.h>
#include <avr/sleep.h>
#include <avr/wdt.h>
#include <stdint.h>

#include "codec.h"
#include "control.h"

#define RX_RING 128u /* power of two */
#define TX_RING 128u /* power of two */
#define WHEEL_WINDOW_SLOTS 5u /* wheel speed over 5 x 20 ms */
#define WHEEL_UM_PER_EDGE 500u
#define BATTERY_DIVIDER 4u
#define ADC_REF_MV 5000u
#define SERVO_TICKS_PER_US 2u /* Timer1 at 16 MHz / 8 */
#define SERVO_PERIOD_TICKS 40000u /* 20 ms */

/* Reset cause, copied from MCUSR before anything else runs. */
static uint8_t reset_flags __attribute__((section(".noinit")));

void early_init(void) __attribute__((naked, used, section(".init3")));
void early_init(void)
{
    reset_flags = MCUSR;
    MCUSR = 0;
    wdt_disable();
}

static volatile uint8_t rx_buf[RX_RING];
static volatile uint8_t rx_head, rx_tail;
static volatile uint8_t rx_overrun;
static volatile uint8_t tx_buf[TX_RING];
static volatile uint8_t tx_head, tx_tail;
static volatile uint32_t now_ms;
static volatile uint16_t encoder_edges;
static volatile uint8_t estop_irq;

ISR(USART_RX_vect)
{
    uint8_t status = UCSR0A;
    uint8_t byte = UDR0;
    uint8_t next = (uint8_t)((rx_head + 1u) & (RX_RING - 1u));
    if (next == rx_tail || (status & (_BV(FE0) | _BV(DOR0)))) {
        rx_overrun = 1;
        return;
    }
    rx_buf[rx_head] = byte;
    rx_head = next;
}

ISR(USART_UDRE_vect)
{
    if (tx_head == tx_tail) {
        UCSR0B &= (uint8_t)~_BV(UDRIE0);
        return;
    }
    UDR0 = tx_buf[tx_tail];
    tx_tail = (uint8_t)((tx_tail + 1u) & (TX_RING - 1u));
}

ISR(TIMER0_COMPA_vect)
{
    now_ms++;
}

ISR(INT0_vect)
{
    encoder_edges++;
}

static void motor_hw_off(void)
{
    TCCR2A &= (uint8_t)~(_BV(COM2A1) | _BV(COM2A0));
    PORTB &= (uint8_t)~(_BV(PB3) | _BV(PB0));
    PORTD &= (uint8_t)~_BV(PD7);
}

ISR(INT1_vect)
{
    motor_hw_off();
    estop_irq = 1;
}

static uint32_t millis(void)
{
    uint32_t t;
    cli();
    t = now_ms;
    sei();
    return t;
}

/* Queue a whole frame or nothing. */
static void uart_send_frame(const uint8_t *frame, uint8_t len)
{
    uint8_t used = (uint8_t)((tx_head - tx_tail) & (TX_RING - 1u));
    if ((uint8_t)(TX_RING - 1u - used) < len) {
        return;
    }
    for (uint8_t i = 0; i < len; i++) {
        tx_buf[tx_head] = frame[i];
        tx_head = (uint8_t)((tx_head + 1u) & (TX_RING - 1u));
    }
    UCSR0B |= _BV(UDRIE0);
}

static uint16_t tx_seq;

static void send(uint8_t type, const uint8_t *payload, uint8_t len)
{
    uint8_t frame[FRAME_MAX_WIRE];
    uint8_t n = (uint8_t)codec_encode(type, tx_seq++, payload, len, frame);
    uart_send_frame(frame, n);
}

static void hw_init(void)
{
    /* UART 115200 8N1, U2X (UBRR 16: 2.1 % error, as the Arduino core). */
    UCSR0A = _BV(U2X0);
    UBRR0 = 16;
    UCSR0C = _BV(UCSZ01) | _BV(UCSZ00);
    UCSR0B = _BV(RXEN0) | _BV(TXEN0) | _BV(RXCIE0);

    /* Timer0: 1 kHz tick, CTC, /64, OCR0A 249. */
    TCCR0A = _BV(WGM01);
    TCCR0B = _BV(CS01) | _BV(CS00);
    OCR0A = 249;
    TIMSK0 = _BV(OCIE0A);

    /* Motor: PB3/OC2A PWM, PD7 / PB0 direction; outputs low. */
    DDRB |= _BV(PB3) | _BV(PB0) | _BV(PB1);
    DDRD |= _BV(PD7);
    motor_hw_off();
    /* Timer2 fast PWM (mode 3), /8: 16 MHz / 8 / 256 = 7.8 kHz. */
    TCCR2A = _BV(WGM21) | _BV(WGM20);
    TCCR2B = _BV(CS21);
    OCR2A = 0;

    /* Servo: Timer1 fast PWM mode 14, TOP = ICR1, /8: 50 Hz, OC1A. */
    ICR1 = SERVO_PERIOD_TICKS - 1u;
    OCR1A = SERVO_CENTRE_US * SERVO_TICKS_PER_US - 1u;
    TCCR1A = _BV(COM1A1) | _BV(WGM11);
    TCCR1B = _BV(WGM13) | _BV(WGM12) | _BV(CS11);

    /* Encoder PD2/INT0 rising; e-stop PD3/INT1 falling, pull-up. */
    DDRD &= (uint8_t)~(_BV(PD2) | _BV(PD3));
    PORTD |= _BV(PD3);
    EICRA = _BV(ISC01) | _BV(ISC00) | _BV(ISC11);
    EIFR = _BV(INTF0) | _BV(INTF1);
    EIMSK = _BV(INT0) | _BV(INT1);

    /* ADC0 against AVcc, /128. */
    ADMUX = _BV(REFS0);
    ADCSRA = _BV(ADEN) | _BV(ADPS2) | _BV(ADPS1) | _BV(ADPS0);
}

static uint8_t estop_active(void)
{
    return (PIND & _BV(PD3)) ? 0 : 1;
}

static void apply_outputs(const ctl_t *c)
{
    int16_t duty = ctl_motor_duty_permille(c);
    uint16_t servo = ctl_servo_us(c);
    /* 0 (off) or 1..256 steps; the compare value steps - 1 is then 0..255 and cannot wrap. */
    uint16_t steps = ctl_motor_pwm_steps(duty);

    cli();
    OCR1A = servo * SERVO_TICKS_PER_US - 1u;
    /* A pending e-stop edge (the ISR fired during this pass, after ctl_tick) keeps the
     * motor off until the next pass latches ESTOP: the ISR's cut must not be undone. */
    if (steps == 0 || estop_active() || estop_irq) {
        motor_hw_off();
        OCR2A = 0;
    } else {
        if (duty > 0) {
            PORTB &= (uint8_t)~_BV(PB0);
            PORTD |= _BV(PD7);
        } else {
            PORTD &= (uint8_t)~_BV(PD7);
            PORTB |= _BV(PB0);
        }
        OCR2A = (uint8_t)(steps - 1u);
        TCCR2A |= _BV(COM2A1);
    }
    sei();
    GPIOR0 = c->state; /* observable by the simavr rig; unused on a board */
}

static uint8_t reset_cause_from(uint8_t flags)
{
    if (flags & _BV(WDRF)) {
        return RESET_WATCHDOG;
    }
    if (flags & (_BV(EXTRF) | _BV(BORF))) {
        return RESET_EXTERNAL;
    }
    return RESET_POWER_ON;
}

static ctl_t ctl;
static framer_t framer;

/* A frame counts from its first byte: the link watchdog then measures the
 * host's silence (up to a frame time early, the safe side), not the frame
 * length plus the silence. */
static uint32_t frame_start_ms;

static void poll_rx(uint32_t t)
{
    while (rx_tail != rx_head) {
        uint8_t byte = rx_buf[rx_tail];
        rx_tail = (uint8_t)((rx_tail + 1u) & (RX_RING - 1u));
        if (framer.len == 0 && !framer.overflow) {
            frame_start_ms = t;
        }
        int r = framer_feed(&framer, byte);
        if (r == 0) {
            continue;
        }
        if (r < 0) {
            ctl_on_decode_error(&ctl, CODEC_ERR_FRAME, FRAME_MAX_ENCODED + 1u, t);
            continue;
        }
        packet_t pkt;
        uint16_t detail;
        codec_status_t st = codec_decode(framer.buf, framer.len, CODEC_H2M, &pkt, &detail);
        framer_init(&framer);
        if (st == CODEC_OK) {
            ctl_on_packet(&ctl, &pkt, frame_start_ms);
        } else {
            ctl_on_decode_error(&ctl, st, detail, t);
        }
    }
    if (rx_overrun) {
        rx_overrun = 0;
        framer_init(&framer);
        framer.overflow = 1; /* the frame in progress lost bytes */
    }
}

int main(void)
{
    uint8_t cause = reset_cause_from(reset_flags);
    hw_init();
    wdt_enable(WDTO_120MS);
    sei();

    uint32_t start = millis();
    ctl_init(&ctl, cause, start);
    framer_init(&framer);

    uint16_t battery_mv = 0;
    uint16_t window[WHEEL_WINDOW_SLOTS] = {0};
    uint8_t slot = 0;
    uint32_t next_telemetry = start + TELEMETRY_PERIOD_MS;
    ADCSRA |= _BV(ADSC);
    set_sleep_mode(SLEEP_MODE_IDLE);

    for (;;) {
        wdt_reset();
        uint32_t t = millis();
        poll_rx(t);
        if (!(ADCSRA & _BV(ADSC))) {
            battery_mv = (uint16_t)((uint32_t)ADC * ADC_REF_MV * BATTERY_DIVIDER / 1023u);
            ADCSRA |= _BV(ADSC);
        }
        /* An edge the ISR saw counts even if the pin is high again by now: read and clear
         * the flag with interrupts off, so an edge between the two is not lost. */
        cli();
        uint8_t estop_edge = estop_irq;
        estop_irq = 0;
        sei();
        ctl_tick(&ctl, t, (uint8_t)(estop_active() || estop_edge), battery_mv);
        apply_outputs(&ctl);

        if (ctl.info_pending) {
            uint8_t info[PAYLOAD_LEN_INFO];
            ctl.info_pending = 0;
            ctl_info_payload(info);
            send(MSG_INFO, info, sizeof info);
        }
        if ((int32_t)(t - next_telemetry) >= 0) {
            next_telemetry += TELEMETRY_PERIOD_MS;
            cli();
            uint16_t edges = encoder_edges;
            encoder_edges = 0;
            sei();
            window[slot] = edges;
            slot = (uint8_t)((slot + 1u) % WHEEL_WINDOW_SLOTS);
            uint32_t sum = 0;
            for (uint8_t i = 0; i < WHEEL_WINDOW_SLOTS; i++) {
                sum += window[i];
            }
            /* mm/s = edges * um_per_edge / window_ms */
            int32_t wheel = (int32_t)(sum * WHEEL_UM_PER_EDGE /
                                      (WHEEL_WINDOW_SLOTS * TELEMETRY_PERIOD_MS));
            if (ctl_motor_duty_permille(&ctl) < 0) {
                wheel = -wheel;
            }
            uint8_t tel[PAYLOAD_LEN_TELEMETRY];
            ctl_telemetry_payload(&ctl, tel, (int16_t)wheel, battery_mv, t - start);
            send(MSG_TELEMETRY, tel, sizeof tel);
        }
        ctl_fault_t f;
        while (ctl_pop_fault(&ctl, &f)) {
            uint8_t payload[PAYLOAD_LEN_FAULT];
            payload[0] = f.code;
            put_u16(payload + 1, f.detail);
            send(MSG_FAULT, payload, sizeof payload);
        }

        cli();
        if (rx_tail == rx_head && !estop_irq) {
            sleep_enable();
            sei();
            sleep_cpu();
            sleep_disable();
        } else {
            sei();
        }
    }
}
