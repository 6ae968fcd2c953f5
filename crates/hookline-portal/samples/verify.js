// Verifies the signature of a webhook request from Hookline (Standard Webhooks).
// Node.js built-in modules only. As a command:
//   WEBHOOK_SECRET=whsec_... node verify.js WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE BODY_FILE
// exits with 0 when the request verifies, and with 1 when it does not.
'use strict';

const crypto = require('node:crypto');
const fs = require('node:fs');

const TOLERANCE_SECONDS = 5 * 60;

/**
 * Checks the headers `webhook-id`, `webhook-timestamp` and `webhook-signature`
 * of a request against its raw body. Throws when the timestamp is invalid or
 * too far from now, or when no `v1` signature matches.
 *
 * @param {string} secret `whsec_` and the base64 of the key
 * @param {{id: string, timestamp: string, signature: string}} headers
 * @param {Buffer} body the raw request body, before any JSON parsing
 */
function verifyWebhook(secret, headers, body, nowSeconds = Date.now() / 1000) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');

  if (!/^[0-9]+$/.test(headers.timestamp)) {
    throw new Error('webhook-timestamp is not a Unix time in seconds');
  }
  if (Math.abs(nowSeconds - Number(headers.timestamp)) > TOLERANCE_SECONDS) {
    throw new Error('webhook-timestamp is outside the 5-minute tolerance');
  }

  const expected = crypto
    .createHmac('sha256', key)
    .update(`${headers.id}.${headers.timestamp}.`)
    .update(body)
    .digest('base64');
  const expectedBytes = Buffer.from(expected);

  // During secret rotation the header carries several signatures.
  for (const entry of headers.signature.split(' ')) {
    const [version, signature = ''] = entry.split(',', 2);
    const signatureBytes = Buffer.from(signature);
    if (
      version === 'v1' &&
      signatureBytes.length === expectedBytes.length &&
      crypto.timingSafeEqual(signatureBytes, expectedBytes)
    ) {
      return;
    }
  }
  throw new Error('no v1 signature matches the body');
}

module.exports = { verifyWebhook };

if (require.main === module) {
  const [id, timestamp, signature, bodyFile] = process.argv.slice(2);
  const secret = process.env.WEBHOOK_SECRET;
  if (!bodyFile || !secret) {
    console.error(
      'usage: WEBHOOK_SECRET=whsec_... node verify.js WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE BODY_FILE',
    );
    process.exit(2);
  }
  try {
    verifyWebhook(secret, { id, timestamp, signature }, fs.readFileSync(bodyFile));
    console.log('verified');
  } catch (error) {
    console.error(`rejected: ${error.message}`);
    process.exit(1);
  }
}
