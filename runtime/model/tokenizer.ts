import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from '@huggingface/tokenizers';
import { Template } from '@huggingface/jinja';
import { MissingTokenizerError, ModelError } from './errors.ts';

export interface ChatMessage { role: 'system' | 'user' | 'assistant'; content: string }

/** The model's tokenizer.json (via @huggingface/tokenizers) and its chat template, if any. */
export class HushTokenizer {
  private readonly tok: Tokenizer;
  private readonly template: Template | null;
  readonly bosToken: string | null;
  readonly eosToken: string | null;

  constructor(readonly dir: string) {
    const file = join(dir, 'tokenizer.json');
    if (!existsSync(file)) throw new MissingTokenizerError(`${file}: missing tokenizer (a Hugging Face tokenizer.json is required)`, file);
    let tj: unknown;
    let tc: Record<string, unknown> = {};
    try {
      tj = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      throw new MissingTokenizerError(`${file}: not valid JSON (${(e as Error).message})`, file);
    }
    const cfgFile = join(dir, 'tokenizer_config.json');
    if (existsSync(cfgFile)) {
      try {
        tc = JSON.parse(readFileSync(cfgFile, 'utf8'));
      } catch (e) {
        throw new ModelError(`${cfgFile}: not valid JSON (${(e as Error).message})`, cfgFile);
      }
    }
    try {
      this.tok = new Tokenizer(tj as object, tc);
    } catch (e) {
      throw new MissingTokenizerError(`${file}: cannot be loaded (${(e as Error).message})`, file);
    }
    const tokenName = (v: unknown) => (typeof v === 'string' ? v : (v as { content?: string } | undefined)?.content ?? null);
    this.bosToken = tokenName(tc.bos_token);
    this.eosToken = tokenName(tc.eos_token);
    const tpl = tc.chat_template;
    this.template = typeof tpl === 'string' ? new Template(tpl) : null;
  }

  /** Token ids of `text`, with the tokenizer's post-processor (BOS) unless told otherwise. */
  encode(text: string, addSpecialTokens = true): number[] {
    return this.tok.encode(text, { add_special_tokens: addSpecialTokens }).ids;
  }

  decode(ids: number[], skipSpecialTokens = true): string {
    return this.tok.decode(ids, { skip_special_tokens: skipSpecialTokens });
  }

  get hasChatTemplate(): boolean {
    return this.template !== null;
  }

  /**
   * The prompt for a chat. With a chat template, rendered from it; without one (a base model such as
   * the embedded default), a plain transcript ending in "assistant:" so the model continues it.
   */
  renderChat(messages: ChatMessage[]): { text: string; addSpecialTokens: boolean } {
    if (this.template) {
      const text = this.template.render({ messages, add_generation_prompt: true, bos_token: this.bosToken ?? '', eos_token: this.eosToken ?? '' });
      return { text, addSpecialTokens: false };
    }
    const text = messages.map((m) => `${m.role}: ${m.content}`).join('\n') + '\nassistant:';
    return { text, addSpecialTokens: true };
  }
}
