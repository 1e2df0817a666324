/*
 * codec.h - frame codec of the motor-controller serial protocol, version 1
 * (hardware/PROTOCOL.md): COBS framing, CRC-16/XMODEM, packet layout.
 *
 * Plain portable C99 with no AVR dependency, so the same file is compiled
 * into the firmware and into the host tests (test_codec.c).
 */
#ifndef TELEDRIVE_CODEC_H
#define TELEDRIVE_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define PROTO_VERSION 1u
#define PKT_HEADER_LEN 4u /* version, type, seq (u16) */
#define PKT_CRC_LEN 2u
#define PKT_MAX_LEN 64u /* decoded packet, header + payload + crc */
#define PKT_MAX_PAYLOAD (PKT_MAX_LEN - PKT_HEADER_LEN - PKT_CRC_LEN)
/* COBS adds one byte per 254 (at most 1 for 64 bytes); plus the 0x00. */
#define FRAME_MAX_ENCODED (PKT_MAX_LEN + 1u)
#define FRAME_MAX_WIRE (FRAME_MAX_ENCODED + 1u)

/* Message types. */
enum {
    MSG_HELLO = 0x01,
    MSG_ARM = 0x02,
    MSG_DISARM = 0x03,
    MSG_DRIVE = 0x04,
    MSG_HEARTBEAT = 0x05,
    MSG_ESTOP = 0x06,
    MSG_INFO = 0x81,
    MSG_TELEMETRY = 0x82,
    MSG_FAULT = 0x83
};

#define PAYLOAD_LEN_DRIVE 4u
#define PAYLOAD_LEN_INFO 7u
#define PAYLOAD_LEN_TELEMETRY 22u
#define PAYLOAD_LEN_FAULT 3u

/* Result of decoding one frame (the reasons of vectors.txt). */
typedef enum {
    CODEC_OK = 0,
    CODEC_ERR_FRAME,   /* COBS error, too short, too long */
    CODEC_ERR_CRC,     /* CRC mismatch */
    CODEC_ERR_VERSION, /* version byte is not PROTO_VERSION */
    CODEC_ERR_TYPE,    /* unknown message type */
    CODEC_ERR_LENGTH   /* payload length wrong for the type */
} codec_status_t;

typedef struct {
    uint8_t version;
    uint8_t type;
    uint16_t seq;
    uint8_t payload_len;
    uint8_t payload[PKT_MAX_PAYLOAD];
} packet_t;

/* Collects wire bytes into frames; one per link direction. */
typedef struct {
    uint8_t buf[FRAME_MAX_ENCODED];
    uint8_t len;
    uint8_t overflow; /* run longer than a frame: drop up to the next 0x00 */
} framer_t;

uint16_t crc16_xmodem(const uint8_t *data, size_t len, uint16_t crc);

/* COBS-encode len bytes; out needs len + len/254 + 1 bytes. Returns the
 * encoded length (without the 0x00 delimiter). */
size_t cobs_encode(const uint8_t *in, size_t len, uint8_t *out);

/* COBS-decode len bytes (no delimiter) into out (cap bytes). Returns the
 * decoded length, or -1 on a malformed or too long input. */
int cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap);

/* Who sent a frame; a receiver accepts only the other side's types. */
typedef enum { CODEC_H2M = 0, CODEC_M2H = 1 } codec_dir_t;

/* Payload length of a known type, or -1 for an unknown type. */
int codec_payload_len(uint8_t type);

/* Message types with bit 7 set go MCU -> host. */
static inline codec_dir_t codec_type_dir(uint8_t type)
{
    return (type & 0x80u) ? CODEC_M2H : CODEC_H2M;
}

/* Decode one frame (COBS bytes without the 0x00 delimiter) sent in direction
 * dir; a type of the other direction is CODEC_ERR_TYPE. Checks run in the
 * order frame, crc, version, type, length. On an error, *detail gets the
 * value for the FAULT detail field (PROTOCOL.md). */
codec_status_t codec_decode(const uint8_t *frame, size_t len, codec_dir_t dir, packet_t *out,
                            uint16_t *detail);

/* Build a complete wire frame (COBS + 0x00) into out (FRAME_MAX_WIRE bytes).
 * Returns the number of bytes written, or 0 if the payload is too long. */
size_t codec_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint8_t payload_len,
                    uint8_t *out);

void framer_init(framer_t *f);

/* Feed one byte. Returns 1 when a frame is complete (f->buf, f->len hold the
 * COBS bytes), -1 when an over-long run ended (a FRAME error), 0 otherwise.
 * Empty frames (0x00 0x00) are ignored. The caller resets with framer_init
 * after consuming a frame. */
int framer_feed(framer_t *f, uint8_t byte);

/* Little-endian helpers. */
static inline void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v & 0xffu);
    p[1] = (uint8_t)(v >> 8);
}
static inline void put_u32(uint8_t *p, uint32_t v)
{
    put_u16(p, (uint16_t)(v & 0xffffu));
    put_u16(p + 2, (uint16_t)(v >> 16));
}
static inline uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] | ((uint16_t)p[1] << 8));
}
static inline uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)get_u16(p) | ((uint32_t)get_u16(p + 2) << 16);
}

#endif
