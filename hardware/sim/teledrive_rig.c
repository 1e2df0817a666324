/*
 * teledrive_rig.c - runs the motor-controller firmware (an ATmega328P ELF)
 * in simavr, paced to wall time, with its UART on a pty and its pins
 * observable and drivable from a test. Protocol of stdin/stdout: README.md.
 *
 * One thread: the loop runs the core up to the cycle that matches the wall
 * clock (in slices of at most SLICE_US), then services the pty and stdin,
 * samples the output registers and sleeps until the next slice is due.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <avr_adc.h>
#include <avr_ioport.h>
#include <avr_uart.h>
#include <sim_io.h>
#include <sim_avr.h>
#include <sim_elf.h>
#include <sim_irq.h>

#define F_CPU_HZ 16000000u
#define SLICE_US 250u          /* core slice between I/O services */
#define UART_FEED_US 100u      /* one byte into the AVR UART per 100 us (<= 115200 8N1) */
#define UART_IN_CAP 65536u     /* bytes from the host waiting for the UART */
#define UART_OUT_CAP 65536u    /* bytes from the AVR waiting for the host */
#define XOFF_STUCK_US 50000u   /* a hung firmware never says XON: overrun after this */
#define WHEEL_UM_PER_EDGE 500u /* 2000 encoder edges per metre */
#define FULL_SPEED_MMPS 3000.0 /* the wheel model: full duty gives 3 m/s ... */
#define WHEEL_TAU_S 0.1        /* ... reached with this time constant */
#define BATTERY_DIVIDER 4u

/* ATmega328P data-space addresses of the registers we observe. */
enum {
    REG_DDRB = 0x24,
    REG_PORTB = 0x25,
    REG_PIND = 0x29,
    REG_DDRD = 0x2a,
    REG_PORTD = 0x2b,
    REG_GPIOR0 = 0x3e,
    REG_TCCR1A = 0x80,
    REG_TCCR1B = 0x81,
    REG_OCR1AL = 0x88,
    REG_OCR1AH = 0x89,
    REG_TCCR2A = 0xb0,
    REG_TCCR2B = 0xb1,
    REG_OCR2A = 0xb3,
};

typedef struct {
    int pwm_permille; /* OC2A duty, 0..1000 */
    int dir;          /* 1 forward (A=1 B=0), -1 reverse, 0 off, 2 brake (both 1) */
    int servo_us;     /* OC1A pulse width, 0 when no pulses */
    int state;        /* firmware state mirrored in GPIOR0 */
} outputs_t;

static avr_t *avr;
static int obs_fd = -1; /* our stdout; the library's printf goes elsewhere */
static const char *pty_link;
static int master_fd = -1;
static char slave_name[128];
static int host_connected;
static volatile sig_atomic_t stop_requested;

static uint8_t in_buf[UART_IN_CAP];
static size_t in_head, in_len;
static uint8_t out_buf[UART_OUT_CAP];
static size_t out_head, out_len;
static unsigned long in_dropped, out_dropped;
static int uart_xoff;
static avr_cycle_count_t xoff_since;
static avr_cycle_count_t next_feed_cycle;

static avr_irq_t *irq_uart_in;
static avr_irq_t *irq_encoder;
static avr_irq_t *irq_estop;
static avr_irq_t *irq_adc0;

static int estop_pressed;
static unsigned battery_mv = 12600;
static int wheel_auto;
static double wheel_mmps;
static int encoder_level;
static int encoder_running;

static struct timespec wall_start;
static avr_cycle_count_t cycle_start;
static double max_lag_ms;
static outputs_t last_out = {-1, -9, -1, -1};

static double wall_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static double sim_ms(void)
{
    return (double)(avr->cycle - cycle_start) * 1000.0 / F_CPU_HZ;
}

/* One observation line: "<event> t=<wall s> sim=<sim ms> <fields>". */
static void emit(const char *event, const char *fmt, ...)
{
    char line[512];
    int n = snprintf(line, sizeof line, "%s t=%.6f sim=%.3f", event, wall_now_s(), sim_ms());
    if (fmt && *fmt && n < (int)sizeof line - 2) {
        line[n++] = ' ';
        va_list ap;
        va_start(ap, fmt);
        n += vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
        va_end(ap);
    }
    if (n > (int)sizeof line - 2) {
        n = (int)sizeof line - 2;
    }
    line[n++] = '\n';
    const char *p = line;
    while (n > 0) {
        ssize_t w = write(obs_fd, p, (size_t)n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            stop_requested = 1; /* the test went away */
            return;
        }
        p += w;
        n -= (int)w;
    }
}

/* ---- pty ---- */

static int pty_create(void)
{
    int fd = posix_openpt(O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0 || grantpt(fd) != 0 || unlockpt(fd) != 0) {
        perror("teledrive_rig: posix_openpt");
        return -1;
    }
    const char *name = ptsname(fd);
    if (name == NULL) {
        perror("teledrive_rig: ptsname");
        close(fd);
        return -1;
    }
    snprintf(slave_name, sizeof slave_name, "%s", name);
    /* Raw from the start: no echo, no CR/LF mangling, whoever opens it. */
    int s = open(slave_name, O_RDWR | O_NOCTTY);
    if (s >= 0) {
        struct termios tio;
        if (tcgetattr(s, &tio) == 0) {
            cfmakeraw(&tio);
            tcsetattr(s, TCSANOW, &tio);
        }
        close(s);
    }
    /* Point the stable path at the new pty atomically. */
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp%d", pty_link, (int)getpid());
    unlink(tmp);
    if (symlink(slave_name, tmp) != 0 || rename(tmp, pty_link) != 0) {
        perror("teledrive_rig: symlink");
        close(fd);
        return -1;
    }
    master_fd = fd;
    host_connected = 0;
    return 0;
}

static void pty_close(void)
{
    if (master_fd >= 0) {
        close(master_fd);
        master_fd = -1;
    }
    host_connected = 0;
    out_len = 0;
    in_len = 0;
}

/* ---- simavr hooks ---- */

static void on_uart_out(avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    if (!host_connected) {
        out_dropped++; /* nobody listening: bytes on a real wire are lost too */
        return;
    }
    if (out_len == UART_OUT_CAP) {
        out_dropped++;
        return;
    }
    out_buf[(out_head + out_len) % UART_OUT_CAP] = (uint8_t)value;
    out_len++;
}

static void on_uart_xoff(avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    uart_xoff = value != 0;
    xoff_since = avr->cycle;
}

static void on_uart_xon(avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)param;
    if (value) {
        uart_xoff = 0;
    }
}

static double encoder_rate_hz(void)
{
    double v = wheel_mmps < 0 ? -wheel_mmps : wheel_mmps;
    return v * 1000.0 / WHEEL_UM_PER_EDGE;
}

static avr_cycle_count_t encoder_edge(avr_t *a, avr_cycle_count_t when, void *param)
{
    (void)a;
    (void)param;
    double rate = encoder_rate_hz();
    if (rate < 0.5) {
        encoder_running = 0;
        if (encoder_level) {
            encoder_level = 0;
            avr_raise_irq(irq_encoder, 0);
        }
        return 0;
    }
    encoder_level = !encoder_level;
    avr_raise_irq(irq_encoder, (uint32_t)encoder_level);
    avr_cycle_count_t half = (avr_cycle_count_t)((double)F_CPU_HZ / (2.0 * rate));
    return when + (half > 0 ? half : 1);
}

static void encoder_update(void)
{
    if (!encoder_running && encoder_rate_hz() >= 0.5) {
        encoder_running = 1;
        avr_cycle_timer_register(avr, 1, encoder_edge, NULL);
    }
}

static void apply_inputs(void)
{
    /* The switch drives PD3 as an external level: without this, simavr lets
     * the internal pull-up win again on every PORTD write. */
    avr_ioport_external_t ext = {.name = 'D', .mask = 1u << 3, .value = estop_pressed ? 0 : 1u << 3};
    avr_ioctl(avr, AVR_IOCTL_IOPORT_SET_EXTERNAL('D'), &ext);
    avr_raise_irq(irq_estop, estop_pressed ? 0 : 1);
    avr_raise_irq(irq_adc0, battery_mv / BATTERY_DIVIDER);
}

/* A reset clears PINx in simavr while the pin IRQs keep their (filtered)
 * values: put the external levels back into the PIN register. */
static void (*chip_reset)(avr_t *a);
static unsigned long resets;

static void on_reset(avr_t *a)
{
    if (chip_reset) {
        chip_reset(a);
    }
    resets++;
    uint8_t keep = (uint8_t)(1u << 3 | 1u << 2);
    uint8_t level = (uint8_t)((estop_pressed ? 0 : 1u << 3) | (encoder_level ? 1u << 2 : 0));
    a->data[REG_PIND] = (uint8_t)((a->data[REG_PIND] & ~keep) | level);
}

/* ---- outputs ---- */

static outputs_t sample_outputs(void)
{
    const uint8_t *d = avr->data;
    outputs_t o;
    uint8_t com2a = (uint8_t)(d[REG_TCCR2A] >> 6);
    uint8_t cs2 = d[REG_TCCR2B] & 0x07u;
    int pin_b3 = (d[REG_DDRB] & 0x08u) && (d[REG_PORTB] & 0x08u);
    if (com2a == 2 && cs2) {
        o.pwm_permille = (int)(((unsigned)d[REG_OCR2A] + 1u) * 1000u / 256u);
    } else if (com2a == 3 && cs2) {
        o.pwm_permille = 1000 - (int)(((unsigned)d[REG_OCR2A] + 1u) * 1000u / 256u);
    } else {
        o.pwm_permille = pin_b3 ? 1000 : 0;
    }
    int a = (d[REG_DDRD] & 0x80u) && (d[REG_PORTD] & 0x80u);
    int b = (d[REG_DDRB] & 0x01u) && (d[REG_PORTB] & 0x01u);
    o.dir = a && !b ? 1 : (!a && b ? -1 : (a && b ? 2 : 0));

    static const unsigned prescale[8] = {0, 1, 8, 64, 256, 1024, 0, 0};
    unsigned cs1 = prescale[d[REG_TCCR1B] & 0x07u];
    unsigned ocr1a = (unsigned)d[REG_OCR1AL] | ((unsigned)d[REG_OCR1AH] << 8);
    if ((d[REG_TCCR1A] >> 6) == 2 && cs1) {
        o.servo_us = (int)((ocr1a + 1u) * cs1 / (F_CPU_HZ / 1000000u));
    } else {
        o.servo_us = 0;
    }
    o.state = d[REG_GPIOR0];
    return o;
}

static void wheel_model_step(double dt_s)
{
    if (!wheel_auto) {
        return;
    }
    int sign = last_out.dir == 1 ? 1 : (last_out.dir == -1 ? -1 : 0);
    double target = sign * last_out.pwm_permille * FULL_SPEED_MMPS / 1000.0;
    double k = dt_s / (WHEEL_TAU_S + dt_s);
    wheel_mmps += (target - wheel_mmps) * k;
    encoder_update();
}

/* Wall time of a cycle on the paced timeline: what the pin change would be
 * on a board when the simulation keeps pace (its lag is reported by stats). */
static double paced_wall_s(avr_cycle_count_t cycle)
{
    return (double)wall_start.tv_sec + (double)wall_start.tv_nsec / 1e9 +
           (double)(cycle - cycle_start) / F_CPU_HZ;
}

static void report_outputs(void)
{
    outputs_t o = sample_outputs();
    if (memcmp(&o, &last_out, sizeof o) == 0) {
        return;
    }
    last_out = o;
    int sign = o.dir == 1 ? 1 : (o.dir == -1 ? -1 : 0);
    emit("out", "at=%.6f pwm=%d dir=%d duty=%d servo_us=%d state=%d", paced_wall_s(avr->cycle),
         o.pwm_permille, o.dir, sign * o.pwm_permille, o.servo_us, o.state);
}

/* Called on every firmware write to an observed register: changes are
 * reported with the cycle they happened at, not at the end of the slice. */
static void on_output_write(avr_irq_t *irq, uint32_t value, void *param)
{
    (void)irq;
    (void)value;
    (void)param;
    if (wall_start.tv_sec != 0 || wall_start.tv_nsec != 0) {
        report_outputs();
    }
}

static void watch_outputs(void)
{
    /* Not OCR1AH: simavr has no TEMP latch, the high byte alone is a transient. */
    static const avr_io_addr_t regs[] = {REG_PORTB,  REG_DDRB,   REG_PORTD,  REG_DDRD,
                                         REG_GPIOR0, REG_TCCR1A, REG_TCCR1B, REG_OCR1AL,
                                         REG_TCCR2A, REG_TCCR2B, REG_OCR2A};
    for (size_t i = 0; i < sizeof regs / sizeof regs[0]; i++) {
        avr_irq_t *irq = avr_iomem_getirq(avr, regs[i], NULL, AVR_IOMEM_IRQ_ALL);
        if (irq != NULL) {
            avr_irq_register_notify(irq, on_output_write, NULL);
        }
    }
}

/* ---- host side of the pty ---- */

static void service_pty(void)
{
    if (master_fd < 0) {
        return;
    }
    struct pollfd p = {.fd = master_fd, .events = POLLIN | POLLOUT};
    if (poll(&p, 1, 0) < 0) {
        return;
    }
    int connected = !(p.revents & POLLHUP);
    if (connected != host_connected) {
        host_connected = connected;
        out_len = 0;
        emit("pty", "%s path=%s", connected ? "open" : "closed", pty_link);
    }
    if (!connected) {
        return;
    }
    while (out_len > 0) {
        size_t chunk = out_len;
        if (out_head + chunk > UART_OUT_CAP) {
            chunk = UART_OUT_CAP - out_head;
        }
        ssize_t w = write(master_fd, out_buf + out_head, chunk);
        if (w <= 0) {
            break;
        }
        out_head = (out_head + (size_t)w) % UART_OUT_CAP;
        out_len -= (size_t)w;
    }
    for (;;) {
        uint8_t tmp[4096];
        ssize_t r = read(master_fd, tmp, sizeof tmp);
        if (r <= 0) {
            break;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (in_len == UART_IN_CAP) {
                in_dropped++;
                continue;
            }
            in_buf[(in_head + in_len) % UART_IN_CAP] = tmp[i];
            in_len++;
        }
    }
}

/* Bytes into the AVR UART at no more than the line rate. */
static void feed_uart(void)
{
    const avr_cycle_count_t per_byte = (avr_cycle_count_t)F_CPU_HZ / 1000000u * UART_FEED_US;
    if (uart_xoff && avr->cycle - xoff_since > (avr_cycle_count_t)F_CPU_HZ / 1000000u * XOFF_STUCK_US) {
        uart_xoff = 0; /* firmware hung or reset: bytes now overrun, as on a board */
    }
    if (next_feed_cycle + 4 * per_byte < avr->cycle) {
        next_feed_cycle = avr->cycle; /* idle line: no burst of saved-up credit */
    }
    while (in_len > 0 && !uart_xoff && next_feed_cycle <= avr->cycle) {
        uint8_t b = in_buf[in_head];
        in_head = (in_head + 1) % UART_IN_CAP;
        in_len--;
        avr_raise_irq(irq_uart_in, b);
        next_feed_cycle += per_byte;
    }
}

/* Freeze the firmware as a hang would: interrupts off, a tight loop
 * (rjmp .-2 in the last flash word, unused by the firmware). */
static void hang_firmware(void)
{
    uint32_t at = (avr->flashend - 1u) & ~1u;
    avr->flash[at] = 0xff;
    avr->flash[at + 1] = 0xcf;
    avr->sreg[S_I] = 0;
    avr->pc = at;
    avr->state = cpu_Running;
}

/* ---- commands ---- */

static char cmd_buf[1024];
static size_t cmd_len;

static void run_command(char *line)
{
    char word[32] = "";
    char arg[64] = "";
    int n = sscanf(line, "%31s %63s", word, arg);
    if (n < 1) {
        return;
    }
    if (strcmp(word, "estop") == 0 && n == 2) {
        estop_pressed = atoi(arg) != 0;
        apply_inputs();
    } else if (strcmp(word, "battery") == 0 && n == 2) {
        battery_mv = (unsigned)strtoul(arg, NULL, 10);
        apply_inputs();
    } else if (strcmp(word, "wheel") == 0 && n == 2) {
        wheel_auto = strcmp(arg, "auto") == 0;
        if (!wheel_auto) {
            wheel_mmps = strtod(arg, NULL);
        }
        encoder_update();
    } else if (strcmp(word, "hangup") == 0) {
        pty_close();
        unlink(pty_link);
    } else if (strcmp(word, "reopen") == 0) {
        if (master_fd < 0 && pty_create() != 0) {
            emit("error", "what=reopen");
            return;
        }
    } else if (strcmp(word, "hang") == 0) {
        hang_firmware();
    } else if (strcmp(word, "stats") == 0) {
        emit("stats", "wall_ms=%.3f lag_max_ms=%.3f in_dropped=%lu out_dropped=%lu",
             (wall_now_s() - ((double)wall_start.tv_sec + (double)wall_start.tv_nsec / 1e9)) *
                 1000.0,
             max_lag_ms, in_dropped, out_dropped);
    } else if (strcmp(word, "quit") == 0) {
        stop_requested = 1;
    } else {
        emit("error", "what=unknown-command");
        return;
    }
    emit("ack", "cmd=%s", word);
}

static void service_stdin(void)
{
    for (;;) {
        char tmp[256];
        ssize_t r = read(STDIN_FILENO, tmp, sizeof tmp);
        if (r == 0) {
            stop_requested = 1; /* the test closed our stdin: exit */
            return;
        }
        if (r < 0) {
            return;
        }
        for (ssize_t i = 0; i < r; i++) {
            if (tmp[i] == '\n') {
                cmd_buf[cmd_len] = '\0';
                run_command(cmd_buf);
                cmd_len = 0;
            } else if (cmd_len < sizeof cmd_buf - 1) {
                cmd_buf[cmd_len++] = tmp[i];
            }
        }
    }
}

/* ---- main loop ---- */

static void on_signal(int sig)
{
    (void)sig;
    stop_requested = 1;
}

static void sleep_no_core(avr_t *a, avr_cycle_count_t how_long)
{
    (void)a;
    (void)how_long; /* the loop below paces; never sleep inside the core */
}

static int usage(void)
{
    fprintf(stderr, "usage: teledrive_rig --elf FIRMWARE.elf --pty PATH [--verbose]\n");
    return 2;
}

int main(int argc, char **argv)
{
    const char *elf = NULL;
    int verbose = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--elf") == 0 && i + 1 < argc) {
            elf = argv[++i];
        } else if (strcmp(argv[i], "--pty") == 0 && i + 1 < argc) {
            pty_link = argv[++i];
        } else if (strcmp(argv[i], "--verbose") == 0) {
            verbose = 1;
        } else {
            return usage();
        }
    }
    if (elf == NULL || pty_link == NULL) {
        return usage();
    }

    /* Our observation lines own stdout; simavr prints chatter with printf. */
    obs_fd = dup(STDOUT_FILENO);
    int sink = verbose ? STDERR_FILENO : open("/dev/null", O_WRONLY);
    dup2(sink, STDOUT_FILENO);
    fcntl(STDIN_FILENO, F_SETFL, fcntl(STDIN_FILENO, F_GETFL) | O_NONBLOCK);
    signal(SIGTERM, on_signal);
    signal(SIGINT, on_signal);
    signal(SIGPIPE, SIG_IGN);

    elf_firmware_t fw;
    memset(&fw, 0, sizeof fw);
    if (elf_read_firmware(elf, &fw) != 0) {
        fprintf(stderr, "teledrive_rig: cannot read %s\n", elf);
        return 1;
    }
    avr = avr_make_mcu_by_name("atmega328p");
    if (avr == NULL) {
        fprintf(stderr, "teledrive_rig: simavr has no atmega328p\n");
        return 1;
    }
    avr_init(avr);
    avr->log = verbose ? LOG_WARNING : LOG_NONE;
    fw.frequency = F_CPU_HZ;
    avr_load_firmware(avr, &fw);
    avr->frequency = F_CPU_HZ;
    avr->vcc = avr->avcc = avr->aref = 5000;
    avr->sleep = sleep_no_core;
    chip_reset = avr->reset;
    avr->reset = on_reset;

    uint32_t uart_flags = 0; /* no stdio echo, no usleep when polled */
    avr_ioctl(avr, AVR_IOCTL_UART_SET_FLAGS('0'), &uart_flags);
    irq_uart_in = avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_INPUT);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUTPUT),
                            on_uart_out, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XOFF),
                            on_uart_xoff, NULL);
    avr_irq_register_notify(avr_io_getirq(avr, AVR_IOCTL_UART_GETIRQ('0'), UART_IRQ_OUT_XON),
                            on_uart_xon, NULL);
    watch_outputs();
    irq_encoder = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), 2);
    irq_estop = avr_io_getirq(avr, AVR_IOCTL_IOPORT_GETIRQ('D'), 3);
    irq_adc0 = avr_io_getirq(avr, AVR_IOCTL_ADC_GETIRQ, ADC_IRQ_ADC0);
    apply_inputs();

    if (pty_create() != 0) {
        return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &wall_start);
    cycle_start = avr->cycle;
    next_feed_cycle = avr->cycle;
    emit("ready", "pty=%s slave=%s elf=%s", pty_link, slave_name, elf);

    const double start_s = (double)wall_start.tv_sec + (double)wall_start.tv_nsec / 1e9;
    const avr_cycle_count_t slice = (avr_cycle_count_t)F_CPU_HZ / 1000000u * SLICE_US;
    double last_model_s = start_s;
    unsigned long resets_reported = resets;
    int rc = 0;
    while (!stop_requested) {
        double now_s = wall_now_s();
        avr_cycle_count_t target = cycle_start + (avr_cycle_count_t)((now_s - start_s) * F_CPU_HZ);
        avr_cycle_count_t slice_end = avr->cycle + slice < target ? avr->cycle + slice : target;
        while (avr->cycle < slice_end) {
            int st = avr_run(avr);
            if (st == cpu_Done || st == cpu_Crashed) {
                emit("crashed", "state=%d pc=0x%x", st, (unsigned)avr->pc);
                stop_requested = 1;
                rc = 1;
                break;
            }
        }
        double lag_ms = (double)(target - avr->cycle) * 1000.0 / F_CPU_HZ;
        if (avr->cycle < target && lag_ms > max_lag_ms) {
            max_lag_ms = lag_ms;
        }
        if (resets != resets_reported) {
            resets_reported = resets;
            emit("reset", "count=%lu", resets);
        }
        report_outputs();
        wheel_model_step(now_s - last_model_s);
        last_model_s = now_s;
        service_pty();
        feed_uart();
        service_stdin();
        if (avr->cycle >= target) {
            struct pollfd fds[2] = {{.fd = STDIN_FILENO, .events = POLLIN},
                                    {.fd = master_fd, .events = POLLIN}};
            struct timespec ts = {0, (long)SLICE_US * 1000L};
            ppoll(fds, master_fd >= 0 && host_connected ? 2 : 1, &ts, NULL);
        }
    }
    emit("exit", "rc=%d", rc);
    pty_close();
    unlink(pty_link);
    avr_terminate(avr);
    return rc;
}
