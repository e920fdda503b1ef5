// Package fileread reads the files a model directory or a caller names (configs, images) without
// trusting them: it opens without blocking, refuses anything that is not a regular file (a named
// pipe, a device such as /dev/zero, a directory), refuses a file larger than a limit before reading
// it, and reads through that limit in case the file grows while it is read.
package fileread
