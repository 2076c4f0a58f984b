// Package protocol encodes and decodes DRBD 8.4 wire packets (protocol
// versions 86..101). It is pure: no sockets, no goroutines.
package protocol
