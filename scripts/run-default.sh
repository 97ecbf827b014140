#!/bin/sh
# make run: a story from the default model (stories15M.bin, else stories260K.bin, found on the
# search path $BAREFLOW_MODELS, ./models, ../shared/models). Extra flags: make run ARGS="-t 0 -n 100".
exec "$(dirname "$0")/../build/bareflow" generate -i "${PROMPT:-Once upon a time}" $ARGS
