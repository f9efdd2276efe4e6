import htm from 'htm';
import { h } from 'preact';

/** Preact elements from tagged templates: html`<p>${text}</p>` (no build-time JSX). */
export const html = htm.bind(h);
