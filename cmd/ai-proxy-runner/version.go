package main

// version is set at build time: -ldflags "-X main.version=v1.2.3".
var version = "dev"
