#!/bin/sh
[ -e /tmp/provision-done ]
