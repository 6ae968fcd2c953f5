//! XML well-formedness without a DTD.
//!
//! Any `<!DOCTYPE` is rejected, so no external entity is ever resolved (XXE)
//! and no internal entity is expanded (the "billion laughs" attack). Without
//! a DTD, the only entities XML defines are the five predefined ones and
//! character references, so every other `&name;` is not well-formed.

use crate::content::PayloadError;
use quick_xml::events::{BytesRef, BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// Entities that XML 1.0 predefines (section 4.6 of the specification).
const PREDEFINED_ENTITIES: [&str; 5] = ["lt", "gt", "amp", "apos", "quot"];

/// Checks that `payload` is one well-formed UTF-8 XML document without a
/// document type declaration.
pub fn check_well_formed(payload: &[u8]) -> Result<(), PayloadError> {
    let text = std::str::from_utf8(payload).map_err(|error| {
        PayloadError::InvalidXml(format!("only UTF-8 is accepted, and {error}"))
    })?;
    let mut reader = Reader::from_str(text);
    reader.config_mut().check_comments = true;

    let mut depth: usize = 0;
    let mut roots: usize = 0;
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|error| invalid_at(position, error))?;
        match event {
            Event::DocType(_) => return Err(PayloadError::XmlDoctype),
            Event::Start(start) => {
                check_attributes(&start, position)?;
                roots += usize::from(depth == 0);
                depth += 1;
            }
            Event::Empty(start) => {
                check_attributes(&start, position)?;
                roots += usize::from(depth == 0);
            }
            Event::End(_) => depth = depth.saturating_sub(1),
            Event::GeneralRef(reference) => check_reference(&reference, position)?,
            Event::Text(text) if depth == 0 && !is_blank(&text) => {
                return Err(invalid_text(position, "text outside the root element"));
            }
            Event::CData(_) if depth == 0 => {
                return Err(invalid_text(position, "CDATA outside the root element"));
            }
            Event::Eof => break,
            _ => {}
        }
        if roots > 1 {
            return Err(invalid_text(position, "a second root element"));
        }
    }
    if roots == 0 {
        return Err(PayloadError::InvalidXml(
            "the document has no root element".into(),
        ));
    }
    if depth > 0 {
        return Err(PayloadError::InvalidXml(format!(
            "the document ends with {depth} element(s) still open"
        )));
    }
    Ok(())
}

fn check_attributes(start: &BytesStart<'_>, position: u64) -> Result<(), PayloadError> {
    for attribute in start.attributes().with_checks(true) {
        let attribute = attribute.map_err(|error| invalid_at(position, error))?;
        attribute
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|error| invalid_at(position, error))?;
    }
    Ok(())
}

fn check_reference(reference: &BytesRef<'_>, position: u64) -> Result<(), PayloadError> {
    if reference.is_char_ref() {
        return match reference.resolve_char_ref() {
            Ok(Some(_)) => Ok(()),
            Ok(None) | Err(_) => Err(invalid_text(position, "an invalid character reference")),
        };
    }
    let name = reference.xml10_content();
    if PREDEFINED_ENTITIES.contains(&name.as_ref()) {
        return Ok(());
    }
    Err(PayloadError::InvalidXml(format!(
        "undefined entity &{name}; at byte {position}; without a DTD only &lt;, &gt;, &amp;, \
         &apos;, &quot; and character references are defined"
    )))
}

fn is_blank(text: &quick_xml::events::BytesText<'_>) -> bool {
    text.as_ref().bytes().all(|byte| byte.is_ascii_whitespace())
}

fn invalid_at(position: u64, error: impl std::fmt::Display) -> PayloadError {
    PayloadError::InvalidXml(format!("{error} (at byte {position})"))
}

fn invalid_text(position: u64, problem: &str) -> PayloadError {
    PayloadError::InvalidXml(format!("{problem} at byte {position}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<(), PayloadError> {
        check_well_formed(text.as_bytes())
    }

    #[test]
    fn well_formed_documents_pass() {
        let documents = [
            "<order id=\"1\"><name>A &amp; B &#x41;</name></order>",
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<order/>\n",
            "<!-- leading comment --><order><![CDATA[<raw>]]></order>",
            "<a xmlns:p=\"urn:x\"><p:b attr='&quot;'/></a>",
        ];
        for document in documents {
            assert_eq!(check(document), Ok(()), "{document}");
        }
    }

    #[test]
    fn doctype_is_rejected() {
        let external = "<?xml version=\"1.0\"?>\
            <!DOCTYPE order [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\
            <order>&xxe;</order>";
        assert_eq!(check(external), Err(PayloadError::XmlDoctype));
        let laughs = "<!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;\">]>\
            <lolz>&lol2;</lolz>";
        assert_eq!(check(laughs), Err(PayloadError::XmlDoctype));
    }

    #[test]
    fn malformed_documents_are_rejected() {
        let documents = [
            "<order><name></order>",
            "<order>",
            "<order/><order/>",
            "text before <order/>",
            "<order attr=\"1\" attr=\"2\"/>",
            "<order>&undefined;</order>",
            "<order a=\"&undefined;\"/>",
            "<order><!-- a -- b --></order>",
            "",
            "   ",
        ];
        for document in documents {
            let result = check(document);
            assert!(
                matches!(result, Err(PayloadError::InvalidXml(_))),
                "{document:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn non_utf8_is_rejected() {
        let result = check_well_formed(b"<order>\xff</order>");
        assert!(
            matches!(result, Err(PayloadError::InvalidXml(message)) if message.contains("UTF-8"))
        );
    }
}
