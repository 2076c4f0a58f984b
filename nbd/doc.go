// Package nbd is gdrbd's NBD front end: a fixed-newstyle server and the
// Linux kernel attach of /dev/nbdX.
package nbd
