// A stand-in for the few analysis components of Elasticsearch's `analysis-common` module that the
// `.security` system index names in its settings, so that a node from the integ-test zip (which has no
// analysis-common, and the module is not on Maven Central) can create that index and with it API keys.
//
// The index's settings (x-pack SecuritySystemIndices, 8.19) define
//   filter   "email": { "type": "pattern_capture", "preserve_original": true, "patterns": [...] }
//   analyzer "email": { "tokenizer": "uax_url_email", "filter": ["email", "lowercase", "unique"] }
// so this plugin registers exactly: the tokenizer `uax_url_email` and the token filters
// `pattern_capture`, `lowercase` and `unique`, each a thin wrapper over Lucene classes that ship with the
// server (lucene-core, lucene-analysis-common). Built and installed by `cargo xtask` (xtask/src/es_standin.rs)
// into the private home of the `source-security` scenario's node only.
package local.xtask.analysis;

import org.apache.lucene.analysis.CharArraySet;
import org.apache.lucene.analysis.LowerCaseFilter;
import org.apache.lucene.analysis.TokenFilter;
import org.apache.lucene.analysis.TokenStream;
import org.apache.lucene.analysis.Tokenizer;
import org.apache.lucene.analysis.email.UAX29URLEmailTokenizer;
import org.apache.lucene.analysis.pattern.PatternCaptureGroupTokenFilter;
import org.apache.lucene.analysis.tokenattributes.CharTermAttribute;
import org.apache.lucene.analysis.tokenattributes.PositionIncrementAttribute;
import org.elasticsearch.common.settings.Settings;
import org.elasticsearch.index.IndexSettings;
import org.elasticsearch.index.analysis.AbstractTokenFilterFactory;
import org.elasticsearch.index.analysis.AbstractTokenizerFactory;
import org.elasticsearch.index.analysis.TokenFilterFactory;
import org.elasticsearch.index.analysis.TokenizerFactory;
import org.elasticsearch.indices.analysis.AnalysisModule.AnalysisProvider;
import org.elasticsearch.plugins.AnalysisPlugin;
import org.elasticsearch.plugins.Plugin;

import java.io.IOException;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.regex.Pattern;

public class SecurityAnalysisPlugin extends Plugin implements AnalysisPlugin {

    @Override
    public Map<String, AnalysisProvider<TokenizerFactory>> getTokenizers() {
        return Map.of("uax_url_email", UrlEmailTokenizerFactory::new);
    }

    @Override
    public Map<String, AnalysisProvider<TokenFilterFactory>> getTokenFilters() {
        return Map.of(
            "lowercase",
            (indexSettings, env, name, settings) -> new LowercaseFactory(name, settings),
            "unique",
            (indexSettings, env, name, settings) -> new UniqueFactory(name, settings),
            // Without its `patterns` it means nothing: only usable as a configured filter.
            "pattern_capture",
            AnalysisPlugin.requiresAnalysisSettings((indexSettings, env, name, settings) -> new CaptureFactory(name, settings))
        );
    }

    /** `uax_url_email`: Lucene's UAX#29 tokenizer that keeps URLs and e-mail addresses whole. */
    static final class UrlEmailTokenizerFactory extends AbstractTokenizerFactory {
        private final int maxTokenLength;

        UrlEmailTokenizerFactory(IndexSettings indexSettings, org.elasticsearch.env.Environment env, String name, Settings settings) {
            super(indexSettings, settings, name);
            this.maxTokenLength = settings.getAsInt("max_token_length", 255);
        }

        @Override
        public Tokenizer create() {
            UAX29URLEmailTokenizer tokenizer = new UAX29URLEmailTokenizer();
            tokenizer.setMaxTokenLength(maxTokenLength);
            return tokenizer;
        }
    }

    /** `lowercase`: Lucene's locale-independent lower-casing; also fit for normalizers. */
    static final class LowercaseFactory extends AbstractTokenFilterFactory {
        LowercaseFactory(String name, Settings settings) {
            super(name, settings);
        }

        @Override
        public TokenStream create(TokenStream input) {
            return new LowerCaseFilter(input);
        }

        @Override
        public TokenStream normalize(TokenStream input) {
            return new LowerCaseFilter(input);
        }
    }

    /** `pattern_capture`: every capture group of every pattern becomes a token of its own. */
    static final class CaptureFactory extends AbstractTokenFilterFactory {
        private final Pattern[] patterns;
        private final boolean preserveOriginal;

        CaptureFactory(String name, Settings settings) {
            super(name, settings);
            List<String> regexes = settings.getAsList("patterns");
            if (regexes.isEmpty()) {
                throw new IllegalArgumentException("filter [" + name + "] of type [pattern_capture] needs [patterns]");
            }
            this.patterns = regexes.stream().map(Pattern::compile).toArray(Pattern[]::new);
            this.preserveOriginal = settings.getAsBoolean("preserve_original", true);
        }

        @Override
        public TokenStream create(TokenStream input) {
            return new PatternCaptureGroupTokenFilter(input, preserveOriginal, patterns);
        }
    }

    /** `unique`: drops a term already seen earlier in the same stream. */
    static final class UniqueFactory extends AbstractTokenFilterFactory {
        UniqueFactory(String name, Settings settings) {
            super(name, settings);
        }

        @Override
        public TokenStream create(TokenStream input) {
            return new FirstOccurrenceFilter(input);
        }
    }

    /** Passes the first occurrence of each term; the positions of dropped terms go to the next kept one. */
    static final class FirstOccurrenceFilter extends TokenFilter {
        private final CharTermAttribute term = addAttribute(CharTermAttribute.class);
        private final PositionIncrementAttribute position = addAttribute(PositionIncrementAttribute.class);
        private final CharArraySet seen = new CharArraySet(16, false);

        FirstOccurrenceFilter(TokenStream input) {
            super(input);
        }

        @Override
        public boolean incrementToken() throws IOException {
            int skipped = 0;
            while (input.incrementToken()) {
                char[] buffer = term.buffer();
                int length = term.length();
                if (seen.contains(buffer, 0, length)) {
                    skipped += position.getPositionIncrement();
                    continue;
                }
                seen.add(Arrays.copyOf(buffer, length));
                position.setPositionIncrement(position.getPositionIncrement() + skipped);
                return true;
            }
            return false;
        }

        @Override
        public void reset() throws IOException {
            super.reset();
            seen.clear();
        }
    }
}
