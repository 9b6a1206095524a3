package xapi

// DecodeResponse exposes the JSON-RPC answer decoder to the fuzz target.
var DecodeResponse = decodeResponse
