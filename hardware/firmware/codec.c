/* codec.c - see codec.h. Portable C99, no AVR headers. */
#include "codec.h"

uint16_t crc16_xmodem(const uint8_t *data, size_t len, uint16_t crc)
{
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((uint16_t)data[i] << 8);
        for (uint8_t bit = 0; bit < 8; bit++) {
            if (crc & 0x8000u) {
                crc = (uint16_t)((uint16_t)(crc << 1) ^ 0x1021u);
            } else {
                crc = (uint16_t)(crc << 1);
            }
        }
    }
    return crc;
}

size_t cobs_encode(const uint8_t *in, size_t len, uint8_t *out)
{
    size_t code_at = 0; /* where the current block's length code goes */
    size_t o = 1;
    uint8_t code = 1;
    for (size_t i = 0; i < len; i++) {
        if (in[i] == 0) {
            out[code_at] = code;
            code_at = o++;
            code = 1;
        } else {
            out[o++] = in[i];
            code++;
            if (code == 0xffu) {
                out[code_at] = code;
                code_at = o++;
                code = 1;
            }
        }
    }
    out[code_at] = code;
    return o;
}

int cobs_decode(const uint8_t *in, size_t len, uint8_t *out, size_t cap)
{
    size_t i = 0;
    size_t o = 0;
    while (i < len) {
        uint8_t code = in[i++];
        if (code == 0) {
            return -1;
        }
        for (uint8_t k = 1; k < code; k++) {
            if (i >= len || in[i] == 0 || o >= cap) {
                return -1;
            }
            out[o++] = in[i++];
        }
        /* A block shorter than 255 implies a zero, unless it ends the input. */
        if (code != 0xffu && i < len) {
            if (o >= cap) {
                return -1;
            }
            out[o++] = 0;
        }
    }
    return (int)o;
}

int codec_payload_len(uint8_t type)
{
    switch (type) {
    case MSG_HELLO:
    case MSG_ARM:
    case MSG_DISARM:
    case MSG_HEARTBEAT:
    case MSG_ESTOP:
        return 0;
    case MSG_DRIVE:
        return PAYLOAD_LEN_DRIVE;
    case MSG_INFO:
        return PAYLOAD_LEN_INFO;
    case MSG_TELEMETRY:
        return PAYLOAD_LEN_TELEMETRY;
    case MSG_FAULT:
        return PAYLOAD_LEN_FAULT;
    default:
        return -1;
    }
}

codec_status_t codec_decode(const uint8_t *frame, size_t len, codec_dir_t dir, packet_t *out,
                            uint16_t *detail)
{
    uint8_t raw[PKT_MAX_LEN];
    *detail = 0;
    if (len > FRAME_MAX_ENCODED) {
        *detail = (uint16_t)len;
        return CODEC_ERR_FRAME;
    }
    int n = cobs_decode(frame, len, raw, sizeof raw);
    if (n < 0) {
        *detail = (uint16_t)len;
        return CODEC_ERR_FRAME;
    }
    if ((size_t)n < PKT_HEADER_LEN + PKT_CRC_LEN) {
        *detail = (uint16_t)n;
        return CODEC_ERR_FRAME;
    }
    size_t body = (size_t)n - PKT_CRC_LEN;
    if (crc16_xmodem(raw, body, 0) != get_u16(raw + body)) {
        return CODEC_ERR_CRC;
    }
    if (raw[0] != PROTO_VERSION) {
        *detail = raw[0];
        return CODEC_ERR_VERSION;
    }
    int want = codec_payload_len(raw[1]);
    if (want < 0 || codec_type_dir(raw[1]) != dir) {
        *detail = raw[1];
        return CODEC_ERR_TYPE;
    }
    if (body - PKT_HEADER_LEN != (size_t)want) {
        *detail = (uint16_t)n;
        return CODEC_ERR_LENGTH;
    }
    out->version = raw[0];
    out->type = raw[1];
    out->seq = get_u16(raw + 2);
    out->payload_len = (uint8_t)want;
    for (int i = 0; i < want; i++) {
        out->payload[i] = raw[PKT_HEADER_LEN + (size_t)i];
    }
    return CODEC_OK;
}

size_t codec_encode(uint8_t type, uint16_t seq, const uint8_t *payload, uint8_t payload_len,
                    uint8_t *out)
{
    uint8_t raw[PKT_MAX_LEN];
    if (payload_len > PKT_MAX_PAYLOAD) {
        return 0;
    }
    raw[0] = PROTO_VERSION;
    raw[1] = type;
    put_u16(raw + 2, seq);
    for (uint8_t i = 0; i < payload_len; i++) {
        raw[PKT_HEADER_LEN + i] = payload[i];
    }
    size_t body = PKT_HEADER_LEN + payload_len;
    put_u16(raw + body, crc16_xmodem(raw, body, 0));
    size_t n = cobs_encode(raw, body + PKT_CRC_LEN, out);
    out[n++] = 0;
    return n;
}

void framer_init(framer_t *f)
{
    f->len = 0;
    f->overflow = 0;
}

int framer_feed(framer_t *f, uint8_t byte)
{
    if (byte == 0) {
        if (f->overflow) {
            framer_init(f);
            return -1;
        }
        return f->len > 0 ? 1 : 0;
    }
    if (f->overflow) {
        return 0;
    }
    if (f->len >= sizeof f->buf) {
        f->overflow = 1;
        return 0;
    }
    f->buf[f->len++] = byte;
    return 0;
}
