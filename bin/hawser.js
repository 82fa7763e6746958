#!/usr/bin/env node
// Entry point for `npx hawser`: runs the compiled CLI (npm ci builds it).
import '../dist/cli/main.js';
