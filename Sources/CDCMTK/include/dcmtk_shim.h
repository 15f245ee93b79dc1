// dcmtk_shim.h — the extern "C" facade over DCMTK 3.6.7 (and OpenJPEG for JPEG 2000).
// Every function is prefixed dcmtk_. No C++ type crosses this boundary; handles are opaque.
// Error texts never carry element values: only a status code and, where useful, a DCMTK
// condition code pair.
#ifndef DCMTK_SHIM_H
#define DCMTK_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Status codes returned by every fallible function.
typedef enum {
    DCMTK_OK = 0,
    DCMTK_NOT_FOUND = 1,           // element or item absent
    DCMTK_NOT_DICOM = 2,           // no DICM magic and no plausible dataset start
    DCMTK_TRUNCATED = 3,           // stream ended inside an element
    DCMTK_PARSE_ERROR = 4,         // malformed encoding
    DCMTK_IO_ERROR = 5,            // cannot open / read / write
    DCMTK_UNSUPPORTED_SYNTAX = 6,  // transfer syntax without a decoder
    DCMTK_NESTING_TOO_DEEP = 7,    // sequences nested deeper than the configured limit
    DCMTK_NO_PIXEL_DATA = 8,
    DCMTK_BAD_PIXEL_DESCRIPTION = 9, // rows/columns/bits missing or inconsistent
    DCMTK_DECODE_FAILED = 10,      // codec reported an error
    DCMTK_PIXEL_DATA_TRUNCATED = 11,
    DCMTK_INVALID_ARGUMENT = 12,
    DCMTK_WRONG_TYPE = 13,         // value of a VR that cannot be read that way
    DCMTK_WRITE_FAILED = 14,
    DCMTK_ENCODE_FAILED = 15,      // cannot change to the requested transfer syntax
} dcmtk_status;

typedef struct dcmtk_file dcmtk_file; // a DcmFileFormat and what was learnt while reading it
typedef struct dcmtk_item dcmtk_item; // a DcmItem owned by its file (dataset, meta header or sequence item)

/// Register DCMTK's codecs and silence its logger. Idempotent and thread-safe; called by dcmtk_open_*.
void dcmtk_initialize(void);

/// Open a Part 10 file or a raw dataset without file meta. Returns NULL and sets *status on failure.
/// max_nesting: deepest sequence nesting accepted (sequences inside items inside sequences…);
/// deeper files are refused before DCMTK parses them (its parser recurses per level).
/// condition: DCMTK's module/code pair for parse failures (may be NULL).
dcmtk_file *dcmtk_open_file(const char *path, int max_nesting, dcmtk_status *status, uint32_t condition[2]);
/// Same from memory; the bytes are copied.
dcmtk_file *dcmtk_open_memory(const uint8_t *bytes, size_t length, int max_nesting, dcmtk_status *status, uint32_t condition[2]);
void dcmtk_close(dcmtk_file *file);

/// Deepest sequence nesting found by the pre-parse scan (0 when no sequences).
int dcmtk_file_max_nesting(const dcmtk_file *file);
/// 1 when the file had a preamble and a file meta group.
int dcmtk_file_has_meta(const dcmtk_file *file);
/// Transfer syntax UID the dataset was read in (copied into buf, NUL-terminated).
dcmtk_status dcmtk_file_transfer_syntax(const dcmtk_file *file, char *buf, size_t capacity);

dcmtk_item *dcmtk_file_dataset(dcmtk_file *file);
dcmtk_item *dcmtk_file_meta(dcmtk_file *file);

/// Convert every string of the dataset to UTF-8 (SpecificCharacterSet becomes ISO_IR 192).
dcmtk_status dcmtk_file_convert_to_utf8(dcmtk_file *file);

// ---- Elements ----------------------------------------------------------------------------

typedef struct {
    uint16_t group;
    uint16_t element;
    char vr[3];           // two letters and NUL
    uint32_t length;      // value length in bytes as stored (0xFFFFFFFF undefined)
    uint32_t multiplicity;
    int is_sequence;      // SQ (item_count is meaningful)
    int is_encapsulated;  // pixel data kept as fragments
    size_t item_count;
} dcmtk_element_info;

size_t dcmtk_item_count(const dcmtk_item *item);
/* Infos of the item's elements in order, at most `capacity` of them, in one walk; returns how many. */
size_t dcmtk_item_elements(dcmtk_item *item, dcmtk_element_info *out, size_t capacity);
dcmtk_status dcmtk_item_element_info(dcmtk_item *item, uint16_t group, uint16_t element, dcmtk_element_info *out);

/// All values of a string (or AT/number, rendered) element, backslash-separated, as stored.
/// *out is malloc'ed; free it with dcmtk_free.
dcmtk_status dcmtk_item_get_string(dcmtk_item *item, uint16_t group, uint16_t element, char **out, size_t *length);
/// Numbers of any numeric VR (US SS UL SL FL FD SV UV IS DS, OF OD OL OW as numbers).
/// With out == NULL only *count is set.
dcmtk_status dcmtk_item_get_doubles(dcmtk_item *item, uint16_t group, uint16_t element, double *out, size_t capacity, size_t *count);
dcmtk_status dcmtk_item_get_int64s(dcmtk_item *item, uint16_t group, uint16_t element, int64_t *out, size_t capacity, size_t *count);
/// Attribute tag (AT) values as group<<16|element.
dcmtk_status dcmtk_item_get_tags(dcmtk_item *item, uint16_t group, uint16_t element, uint32_t *out, size_t capacity, size_t *count);
/// Value bytes as DCMTK holds them (little endian on this host). Borrowed pointer, valid until the element changes.
dcmtk_status dcmtk_item_get_bytes(dcmtk_item *item, uint16_t group, uint16_t element, const uint8_t **out, size_t *length);
/// Pixel data as stored, chunk `index`: native data is chunk 0; encapsulated data one chunk per pixel item.
dcmtk_status dcmtk_item_pixel_chunk(dcmtk_item *item, size_t index, const uint8_t **out, size_t *length);

/// The item at index of the sequence element (borrowed, owned by the file).
dcmtk_item *dcmtk_item_sequence_item(dcmtk_item *item, uint16_t group, uint16_t element, size_t index);
/// Append a new empty item to a sequence, creating the sequence if absent.
dcmtk_item *dcmtk_item_sequence_append(dcmtk_item *item, uint16_t group, uint16_t element);

/// Insert or replace. vr may be NULL to use the dictionary's VR (UN for unknown tags).
dcmtk_status dcmtk_item_put_string(dcmtk_item *item, uint16_t group, uint16_t element, const char *vr, const char *value, size_t length);
dcmtk_status dcmtk_item_put_doubles(dcmtk_item *item, uint16_t group, uint16_t element, const char *vr, const double *values, size_t count);
dcmtk_status dcmtk_item_put_bytes(dcmtk_item *item, uint16_t group, uint16_t element, const char *vr, const uint8_t *bytes, size_t length);
dcmtk_status dcmtk_item_put_tags(dcmtk_item *item, uint16_t group, uint16_t element, const uint32_t *tags, size_t count);
/// Insert an empty element (zero length) of the given VR, or an empty sequence for SQ.
dcmtk_status dcmtk_item_put_empty(dcmtk_item *item, uint16_t group, uint16_t element, const char *vr);
/// Remove the element (and everything under it). Items handed out from under it become invalid.
dcmtk_status dcmtk_item_remove(dcmtk_item *item, uint16_t group, uint16_t element);

/// Dictionary lookup: keyword and VR of a public tag (0 on unknown). Buffers NUL-terminated.
int dcmtk_dictionary_lookup(uint16_t group, uint16_t element, char *keyword, size_t keyword_capacity, char vr[3]);

// ---- Pixels ------------------------------------------------------------------------------

typedef struct {
    uint32_t rows, columns, samples_per_pixel, frames;
    uint16_t bits_allocated, bits_stored, high_bit, pixel_representation;
    uint16_t planar_configuration;  // of the source; the output is always interleaved
    char photometric[20];           // of the output (e.g. RGB after a JPEG YBR decode)
    uint32_t bytes_per_sample;      // of the output: 1, 2 or 4 (1-bit data unpacked to 1 byte)
} dcmtk_pixel_info;

/// Decode every frame to stored values, interleaved samples, little endian, frames back to back.
/// *out is malloc'ed (free with dcmtk_free). The file's dataset gains an uncompressed
/// representation; writing in the original transfer syntax still works.
dcmtk_status dcmtk_decode_pixels(dcmtk_file *file, dcmtk_pixel_info *info, uint8_t **out, size_t *length);

// ---- Writing -----------------------------------------------------------------------------

/// Write a Part 10 file. transfer_syntax NULL keeps the syntax read; otherwise the dataset is
/// re-encoded (uncompressed syntaxes always; JPEG-LS lossless / RLE / JPEG lossless via DCMTK's encoders).
/// The file meta is made anew and agrees with the dataset: SOP Class and Instance UID from the dataset,
/// else as the meta held them, else absent (never invented); the transfer syntax written.
dcmtk_status dcmtk_file_save(dcmtk_file *file, const char *path, const char *transfer_syntax);
/// 1 when DCMTK can write files in this transfer syntax (with the pixel data as held), else 0.
int dcmtk_transfer_syntax_writable(const char *uid);
/// Same into memory (*out malloc'ed, free with dcmtk_free).
dcmtk_status dcmtk_file_save_memory(dcmtk_file *file, const char *transfer_syntax, uint8_t **out, size_t *length);

// ---- Frames as stored, rendering ---------------------------------------------------------

/// One frame of encapsulated pixel data as stored: its fragments joined (*out malloc'ed, free with
/// dcmtk_free). DCMTK_WRONG_TYPE when the pixel data is native (not encapsulated), DCMTK_NOT_FOUND when
/// `index` is past the last frame. Call before dcmtk_decode_pixels on the same file.
dcmtk_status dcmtk_encapsulated_frame(dcmtk_file *file, uint32_t index, uint8_t **out, size_t *length);

/// A baseline JPEG (JFIF-less bitstream, IJG) of 8-bit interleaved pixels: 1 sample (grey) or 3 (RGB).
/// quality 1–100. *out malloc'ed (free with dcmtk_free).
dcmtk_status dcmtk_encode_jpeg8(const uint8_t *pixels, uint32_t rows, uint32_t columns, uint32_t samples, int quality,
                                uint8_t **out, size_t *length);

/// Dictionary lookup by keyword (e.g. "PatientName"): 1 and the tag when known, 0 otherwise.
int dcmtk_dictionary_find(const char *keyword, uint16_t *group, uint16_t *element);

void dcmtk_free(void *pointer);

#ifdef __cplusplus
}
#endif
#endif
