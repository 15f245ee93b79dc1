// tesseract_shim.h — the C facade over Tesseract 5 and Leptonica used to find text burned into pixels.
// Every function is prefixed tess_. No Tesseract or Leptonica type crosses this boundary; engines are
// opaque handles, images are 8-bit grey buffers, results are plain structs freed by tess_words_free.
#ifndef TESSERACT_SHIM_H
#define TESSERACT_SHIM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Status codes of every fallible function.
typedef enum {
    TESS_OK = 0,
    TESS_INIT_FAILED = 1,        // the language data could not be loaded
    TESS_INVALID_ARGUMENT = 2,   // a size, stride or option out of range
    TESS_RECOGNITION_FAILED = 3, // Tesseract reported an error while recognising
    TESS_OUT_OF_MEMORY = 4,
} tess_status;

/// One recognition engine (a TessBaseAPI with its language model loaded). Not for concurrent use:
/// one engine per thread; separate engines recognise in parallel.
typedef struct tess_engine tess_engine;

/// The Tesseract library version, e.g. "5.3.0" (static storage).
const char *tess_library_version(void);

/// Loads `language` (e.g. "eng") from `datapath` (NULL: the library's default tessdata folder), set up for
/// sparse text (page segmentation mode 11), 300 dpi, no debug output. Returns NULL and sets *status on failure.
tess_engine *tess_engine_create(const char *datapath, const char *language, tess_status *status);
void tess_engine_destroy(tess_engine *engine);

/// A recognised word: its box in the input image's pixels, Tesseract's confidence (0–100), the text line
/// it belongs to (numbered from 0 per call) and its UTF-8 text (malloc'ed; freed by tess_words_free).
typedef struct {
    int32_t left, top, width, height;
    float confidence;
    int32_t line;
    char *text;
} tess_word;

/// How a glyph layer is made from an 8-bit grey image: a morphological top-hat keeps structures narrower than
/// `kernel` that are brighter (polarity 0) or darker (polarity 1) than their surroundings; values below
/// `threshold` become background, the rest are multiplied by `gain`; the result is drawn dark on white,
/// scaled by `scale` (linear interpolation up, area mapping down) and framed by `border` white pixels.
typedef struct {
    int32_t polarity;
    int32_t kernel;     // odd, 3–255, pixels of the input
    int32_t threshold;  // 1–255; 0: twice the 90th percentile of the top-hat, within 40–100 (adapts to noise)
    int32_t gain;       // 1–32
    float scale;        // 0.125–8
    int32_t border;     // 0–256 pixels of the scaled layer
    int32_t block;      // 0: read as sparse text (mode 11); 1: as one block (mode 6), which keeps the isolated single
                        // characters sparse mode drops as noise ("L", "R")
} tess_layer_options;

/// The glyph layer itself (for inspection and tests): *out is malloc'ed, rows of *out_width bytes.
tess_status tess_glyph_layer(const uint8_t *gray, int32_t width, int32_t height, int32_t stride,
                             const tess_layer_options *options, uint8_t **out, int32_t *out_width, int32_t *out_height);

/// Recognises the words of the glyph layer of `gray`; boxes are mapped back to `gray`'s pixels.
tess_status tess_engine_read_layer(tess_engine *engine, const uint8_t *gray, int32_t width, int32_t height, int32_t stride,
                                   const tess_layer_options *options, tess_word **words, size_t *count);

/// Recognises one line of text in a rectangle of `gray` (x, y, width, height in its pixels): the rectangle is cut
/// out, inverted when `invert` is 1 (bright text), scaled so that its height is `target_height` pixels, framed by
/// white and read as a single text line (page segmentation mode 7) with Tesseract's own thresholding. Boxes are
/// mapped back to `gray`'s pixels.
tess_status tess_engine_read_region(tess_engine *engine, const uint8_t *gray, int32_t width, int32_t height, int32_t stride,
                                    int32_t x, int32_t y, int32_t region_width, int32_t region_height, int32_t invert,
                                    int32_t target_height, tess_word **words, size_t *count);

/// Recognises the words of `gray` as given (dark text on a light background reads best).
tess_status tess_engine_read(tess_engine *engine, const uint8_t *gray, int32_t width, int32_t height, int32_t stride,
                             tess_word **words, size_t *count);

void tess_words_free(tess_word *words, size_t count);
void tess_free(void *pointer);

#ifdef __cplusplus
}
#endif
#endif
