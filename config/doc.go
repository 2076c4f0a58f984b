// Package config reads DRBD 8.4 drbd.conf files: the lexer and parser,
// includes, common inheritance, units and defaults, host selection, and a
// normalized dump.
package config
