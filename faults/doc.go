// Package faults holds the fault-injection suite (its tests) for the worker:
// upstream failures, Redis failures and worker crashes, against real
// processes. See docs/reliability.md for the figures it produces.
package faults
