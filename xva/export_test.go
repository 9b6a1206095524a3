package xva

// XXH64 exposes the package's XXH64 to the black-box tests.
var XXH64 = xxh64
