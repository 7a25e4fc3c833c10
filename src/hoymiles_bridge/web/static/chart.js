// A small canvas chart for the web UI (time series and bars); see charts.js.
"use strict";
