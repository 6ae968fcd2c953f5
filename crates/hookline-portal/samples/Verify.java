// Verifies the signature of a webhook request from Hookline (Standard Webhooks).
// Java standard library only (Java 11 or newer). As a command:
//   WEBHOOK_SECRET=whsec_... java Verify.java WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE BODY_FILE
// exits with 0 when the request verifies, and with 1 when it does not.

import java.io.ByteArrayOutputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.GeneralSecurityException;
import java.security.MessageDigest;
import java.time.Instant;
import java.util.Base64;
import javax.crypto.Mac;
import javax.crypto.spec.SecretKeySpec;

public final class Verify {
    private static final long TOLERANCE_SECONDS = 5 * 60;

    /** A request that is not a genuine, recent webhook from Hookline. */
    public static final class WebhookVerificationException extends Exception {
        public WebhookVerificationException(String message) {
            super(message);
        }
    }

    /**
     * Checks the headers {@code webhook-id}, {@code webhook-timestamp} and
     * {@code webhook-signature} of a request against its raw body.
     *
     * @throws WebhookVerificationException when the timestamp is invalid or
     *     too far from {@code now}, or when no {@code v1} signature matches
     */
    public static void verify(String secret, String webhookId, String webhookTimestamp,
            String webhookSignature, byte[] body, Instant now)
            throws WebhookVerificationException, GeneralSecurityException {
        byte[] key = Base64.getDecoder().decode(secret.replaceFirst("^whsec_", ""));

        if (!webhookTimestamp.matches("[0-9]{1,18}")) {
            throw new WebhookVerificationException("webhook-timestamp is not a Unix time in seconds");
        }
        long sentAt = Long.parseLong(webhookTimestamp);
        if (Math.abs(now.getEpochSecond() - sentAt) > TOLERANCE_SECONDS) {
            throw new WebhookVerificationException("webhook-timestamp is outside the 5-minute tolerance");
        }

        ByteArrayOutputStream signedContent = new ByteArrayOutputStream();
        signedContent.writeBytes((webhookId + "." + webhookTimestamp + ".").getBytes(StandardCharsets.UTF_8));
        signedContent.writeBytes(body);
        Mac mac = Mac.getInstance("HmacSHA256");
        mac.init(new SecretKeySpec(key, "HmacSHA256"));
        byte[] expected = Base64.getEncoder().encode(mac.doFinal(signedContent.toByteArray()));

        // During secret rotation the header carries several signatures.
        for (String entry : webhookSignature.split(" ")) {
            if (!entry.startsWith("v1,")) {
                continue;
            }
            byte[] signature = entry.substring(3).getBytes(StandardCharsets.US_ASCII);
            // MessageDigest.isEqual takes the same time wherever the bytes differ.
            if (MessageDigest.isEqual(signature, expected)) {
                return;
            }
        }
        throw new WebhookVerificationException("no v1 signature matches the body");
    }

    public static void main(String[] args) throws Exception {
        String secret = System.getenv("WEBHOOK_SECRET");
        if (args.length != 4 || secret == null) {
            System.err.println("usage: WEBHOOK_SECRET=whsec_... java Verify.java "
                    + "WEBHOOK_ID WEBHOOK_TIMESTAMP WEBHOOK_SIGNATURE BODY_FILE");
            System.exit(2);
        }
        byte[] body = Files.readAllBytes(Path.of(args[3]));
        try {
            verify(secret, args[0], args[1], args[2], body, Instant.now());
            System.out.println("verified");
        } catch (WebhookVerificationException error) {
            System.err.println("rejected: " + error.getMessage());
            System.exit(1);
        }
    }
}
